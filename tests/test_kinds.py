"""The registry of job kinds (``lpft_core.jobs.kinds``) is the one list of them: the worker
runs what it names, and the API's schemas, its spec building and the client's command line
agree with it, so a kind registered in one place and forgotten in another fails here."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import get_args

import pytest
from lpft_api.schemas import JobCreate, JobPublic
from lpft_api.services.specs import KIND_REQUESTS
from lpft_client import cli

from lpft_core import JOB_KINDS, JobKind, Resume, job_kind
from lpft_core.jobs.kinds import register_job_kind


def test_every_kind_is_registered_once() -> None:
    assert list(JOB_KINDS) == list(JobKind)
    with pytest.raises(ValueError, match="registered already"):
        register_job_kind(
            JobKind.FINETUNE, spec=object, runner="m:f", resume=Resume.FROM_START, serves=True
        )
    with pytest.raises(ValueError, match="not a valid JobKind"):
        job_kind("grid_search")


@pytest.mark.parametrize("kind", list(JobKind))
def test_every_kind_runs_through_one_runner_signature(kind: JobKind) -> None:
    runner = job_kind(kind).load_runner()
    assert list(inspect.signature(runner).parameters) == [
        "spec",
        "title",
        "progress",
        "should_stop",
    ]


@pytest.mark.parametrize("kind", list(JobKind))
def test_a_kind_that_resumes_takes_a_checkpoint_directory(kind: JobKind) -> None:
    info = job_kind(kind)
    fields = {f.name for f in dataclasses.fields(info.spec)}
    assert ("checkpoint_dir" in fields) == (info.resume is not Resume.FROM_START)


def test_the_api_offers_every_registered_kind() -> None:
    assert get_args(JobPublic.model_fields["kind"].annotation) == tuple(k.value for k in JobKind)
    assert list(KIND_REQUESTS) == list(JOB_KINDS)
    # POST /jobs takes every kind whose request carries a ``kind`` (recalibrate is
    # POST /jobs/{id}/recalibrate), documented in the registry's order.
    posted = [
        kind.value for kind, entry in KIND_REQUESTS.items() if "kind" in entry.request.model_fields
    ]
    members = get_args(get_args(JobCreate)[0])
    assert [get_args(member)[1].tag for member in members] == posted
    assert [get_args(member)[0] for member in members] == [
        KIND_REQUESTS[JobKind(kind)].request for kind in posted
    ]
    assert posted == submit_kinds()


def submit_kinds() -> list[str]:
    """The kinds ``lpft jobs submit --kind`` accepts."""
    jobs = argparse.ArgumentParser()
    cli._add_jobs_commands(jobs)
    verbs = next(a for a in jobs._actions if isinstance(a, argparse._SubParsersAction))
    submit = verbs.choices["submit"]
    return list(next(a for a in submit._actions if a.dest == "kind").choices)


def test_every_kind_posted_takes_integrations() -> None:
    """A tracker run for every job kind: POST /jobs takes ``integrations`` on each, and a
    re-calibration updates its source job's runs (``specs.recalibration_record``)."""
    for kind, entry in KIND_REQUESTS.items():
        if "kind" in entry.request.model_fields:
            assert "integrations" in entry.request.model_fields, kind
