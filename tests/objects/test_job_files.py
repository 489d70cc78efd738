"""A job's files through a real S3 server (moto), between two workers' caches that share
nothing: inputs fetched into an empty cache, checkpoints published as versions of which the
last complete one is resumed, outputs published with their manifest."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lpft_contract.job_files import JobFiles, LiveLog, publish_job_log
from lpft_contract.logs import JOB_LOG
from lpft_contract.objects import MANIFEST, ObjectStore, is_complete, publish
from lpft_contract.records import JobRecord
from lpft_contract.volume import Volume

from tests.objects.conftest import s3_store


def record(job_id: str = "job-1", source_job: str | None = None, run: int = 1) -> JobRecord:
    return JobRecord(
        id=job_id,
        attempts=run,
        tenant="alice",
        method="lp_ft",
        source_job=source_job,
        model=None,
        dataset={"train": "ds-train", "validation": None},
        eval_sets={"ood": "ds-ood"},
        hyperparameters={},
        queue="cpu",
        spec={},
    )


def keys(store: ObjectStore, prefix: str) -> list[str]:
    return [info.key for info in store.list(prefix)]


def test_inputs_reach_an_empty_cache_and_checkpoints_resume_on_another_worker(
    tmp_path: Path, moto_endpoint: str
) -> None:
    store = s3_store(moto_endpoint)
    api = Volume(tmp_path / "api", store)
    for dataset in ("ds-train", "ds-ood"):
        api.write_text(Volume.dataset_key(dataset), f'{{"text": "{dataset}", "label": 0}}\n')

    first = JobFiles(Volume(tmp_path / "worker-1", store), record())
    first.fetch_inputs()
    assert first.volume.path(Volume.dataset_key("ds-ood")).read_text().startswith('{"text"')
    assert not first.publish_checkpoint(), "no checkpoint yet: nothing to publish"
    checkpoint = first.volume.checkpoint_dir("job-1")
    checkpoint.mkdir(parents=True)
    (checkpoint / "probe.pt").write_bytes(b"probe")
    assert first.publish_checkpoint()
    assert not first.publish_checkpoint(), "unchanged: not published again"
    (checkpoint / "training.pt").write_bytes(b"epoch 1")
    assert first.publish_checkpoint()
    assert keys(store, "jobs/job-1/checkpoint") == [
        f"jobs/job-1/checkpoint/v-000002-run-001/{name}"
        for name in (MANIFEST, "probe.pt", "training.pt")
    ], "only the newest version is kept"

    # A third version whose upload died before its manifest: not complete, never resumed.
    store.put_bytes("jobs/job-1/checkpoint/v-000003-run-001/training.pt", b"half of epoch 2")
    second = JobFiles(Volume(tmp_path / "worker-2", store), record(run=2))
    second.fetch_inputs()
    resumed = second.volume.checkpoint_dir("job-1")
    assert (resumed / "training.pt").read_bytes() == b"epoch 1"
    assert second.checkpoint_version == 2
    (resumed / "training.pt").write_bytes(b"epoch 2")
    assert second.publish_checkpoint()
    assert keys(store, "jobs/job-1/checkpoint") == [
        f"jobs/job-1/checkpoint/v-000003-run-002/{name}"
        for name in (MANIFEST, "probe.pt", "training.pt")
    ], "the newest complete version only: the dead upload's leftovers are gone"
    assert store.get_bytes("jobs/job-1/checkpoint/v-000003-run-002/training.pt") == b"epoch 2"


def test_a_run_whose_job_was_handed_on_publishes_nothing(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """Its worker was lost and the job given to another: the late run must not write over
    the new one's checkpoints or model."""
    store = s3_store(moto_endpoint)
    stale = JobFiles(Volume(tmp_path / "worker-1", store), record(), still_ours=lambda: False)
    for directory in (stale.volume.checkpoint_dir("job-1"), stale.volume.model_dir("job-1")):
        directory.mkdir(parents=True)
        (directory / "state.pt").write_bytes(b"late")
    assert not stale.publish_checkpoint()
    stale.publish_outputs()
    assert keys(store, "jobs/job-1") == []


def test_outputs_are_published_and_a_rewritten_source_model_again(
    tmp_path: Path, moto_endpoint: str
) -> None:
    store = s3_store(moto_endpoint)
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "model.safetensors").write_bytes(b"weights")
    (trained / "calibration.json").write_text('{"temperature": 1.5}')
    publish(store, Volume.model_key("job-src"), trained)
    for dataset in ("ds-train", "ds-ood"):
        store.put_bytes(Volume.dataset_key(dataset), b"{}\n")

    files = JobFiles(Volume(tmp_path / "worker", store), record("job-recal", "job-src"))
    files.fetch_inputs()
    source = files.volume.model_dir("job-src")
    assert (source / "model.safetensors").read_bytes() == b"weights"
    (source / "calibration.json").write_text('{"temperature": 1.1}')  # as a re-calibration does
    files.volume.model_dir("job-recal").mkdir(parents=True)
    (files.volume.model_dir("job-recal") / "metrics.json").write_text("{}")
    files.publish_outputs()
    assert is_complete(store, Volume.model_key("job-recal"))
    calibration = store.get_bytes("jobs/job-src/model/calibration.json")
    assert calibration == b'{"temperature": 1.1}'

    (files.volume.job_dir("job-recal") / JOB_LOG).write_text('{"message": "hi"}\n')
    publish_job_log(files.volume, "job-recal")
    assert store.get_bytes(f"jobs/job-recal/{JOB_LOG}") == b'{"message": "hi"}\n'


def test_on_the_local_backend_nothing_is_copied(tmp_path: Path) -> None:
    volume = Volume.local(tmp_path)
    files = JobFiles(volume, record())
    files.fetch_inputs()  # the datasets are not there, and not asked for
    volume.checkpoint_dir("job-1").mkdir(parents=True)
    (volume.checkpoint_dir("job-1") / "probe.pt").write_bytes(b"probe")
    assert not files.publish_checkpoint()
    assert sorted(p.name for p in volume.checkpoint_dir("job-1").iterdir()) == ["probe.pt"]


def test_a_running_jobs_log_reaches_the_store_as_it_grows(
    tmp_path: Path, moto_endpoint: str
) -> None:
    store = s3_store(moto_endpoint)
    volume = Volume(tmp_path / "worker", store)
    log = volume.job_dir("job-1") / JOB_LOG
    log.parent.mkdir(parents=True)
    key = f"jobs/job-1/{JOB_LOG}"

    def stored_when(condition: Callable[[bytes], bool]) -> bytes:
        deadline = time.monotonic() + 20
        while True:
            data = store.get_bytes(key) if store.stat(key) else b""
            if condition(data):
                return data
            assert time.monotonic() < deadline, f"the store holds {data!r}"
            time.sleep(0.05)

    with LiveLog(volume, "job-1", period_s=0.1):
        log.write_text('{"message": "one"}\n')
        stored_when(lambda data: data == b'{"message": "one"}\n')
        with log.open("a") as more:
            more.write('{"message": "two"}\n')
        assert stored_when(lambda data: b"two" in data).count(b"\n") == 2
