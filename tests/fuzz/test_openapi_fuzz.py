"""Property-based fuzzing of every operation in the committed ``openapi/openapi.json``.

The committed document is the contract clients are built from, so it is what the requests are
generated from and what the responses are checked against, not the live app's own document.
Schemathesis draws valid and invalid requests (its examples, coverage and fuzzing phases) and
sends them, authenticated as one tenant, to a real API process (see ``conftest.py``).

Size and randomness, from the environment:

* ``LPFT_FUZZ_EXAMPLES``: Hypothesis examples per operation in the fuzzing phase (default
  ``DEFAULT_EXAMPLES``, a CI-sized run); the coverage phase adds its fixed set on top.
* ``LPFT_FUZZ_SEED``: unset, the run is derandomized (the same requests every time, until the
  test function's code changes: Hypothesis derives its stream from it); an integer replays
  that seed; ``random`` draws a fresh one. The seed is printed with the request count.

``make fuzz`` runs this module alone with a large count and a random seed.
"""

from __future__ import annotations

import os
import re
import secrets
import zlib
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import negated_parameters
from schemathesis.openapi.checks import RejectedPositiveData

from tests.fuzz.conftest import STATS, Finding, Resources

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "openapi" / "openapi.json"
#: About 1,500 requests; the module took 40-70 s on 2 busy cores, server start and the tiny
#: training included.
DEFAULT_EXAMPLES = 20


def _config() -> SchemathesisConfig:
    examples = int(os.environ.get("LPFT_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)
    seed = os.environ.get("LPFT_FUZZ_SEED", "")
    data: dict[str, Any] = {
        "generation": {
            "max-examples": examples,
            "mode": "all",  # valid and invalid requests
            "deterministic": not seed,
            # No example database: replaying what earlier runs failed on would make the CI
            # run depend on them. A failing random run is replayed with its printed seed.
            "database": "none",
        },
        "request-timeout": 60,
        # Every built-in check runs (``--checks all``) except these three, which can only act
        # on what a stateful run records: ``use_after_free`` and ``ensure_resource_availability``
        # follow a creating or deleting request to the requests made with its result (the
        # pytest runner sends independent cases, with no such history), and
        # ``object_level_authorization`` replays reads as other configured identities, of which
        # this configuration gives it none (it knows one key). Tenant isolation is checked here
        # instead: ``foreign_ids_are_not_served``. ``max_response_time`` stays off, as by
        # default: a latency bound would only measure how busy the 2 shared cores are.
        "checks": {
            "use_after_free": {"enabled": False},
            "ensure_resource_availability": {"enabled": False},
            "object_level_authorization": {"enabled": False},
        },
    }
    if seed:
        data["seed"] = secrets.randbits(32) if seed == "random" else int(seed)
        STATS.seed = f"LPFT_FUZZ_SEED={data['seed']} replays it"
    else:
        STATS.seed = "derandomized (set LPFT_FUZZ_SEED=random for fresh requests)"
    return SchemathesisConfig.from_dict(data)


schema = schemathesis.openapi.from_path(SCHEMA_PATH, config=_config())


@schema.hook
def filter_failure(context: Any, failure: Any, case: schemathesis.Case, response: Any) -> bool:
    """Keep every failure except one kind of "schema-valid request rejected" (ST202).

    A request can match the document in shape and still be wrong in meaning: a dataset or job
    id that does not exist, a file that is not JSONL or CSV, labels that are not the model's.
    The API answers those with a documented 422 problem whose ``title`` is not "Invalid
    request", and the document cannot say more (it has no way to declare which ids exist or
    what a binary file holds). A 422 titled "Invalid request" comes from the server's own
    request models rejecting the shape of the request: there the document and the server
    disagree, and that stays a failure, as does a rejection with any other status.
    """
    if isinstance(failure, RejectedPositiveData) and response.status_code == 422:
        try:
            problem = response.json()
        except ValueError:
            return True
        return not isinstance(problem, dict) or problem.get("title") == "Invalid request"
    if isinstance(failure, AcceptedNegativeData):
        return not _negative_only_in_the_credentials(case)
    return True


def _negative_only_in_the_credentials(case: schemathesis.Case) -> bool:
    """Whether the only parameter a negative case broke is ``Authorization``.

    The document declares the bearer scheme, so schemathesis draws invalid ``Authorization``
    headers; but every request here is sent with the tenant's real key (``case.call(headers=
    ...)``), which replaces the drawn one. Such a case reaches the server valid, and its 2xx
    is no "schema-violating request accepted" (ST201). The guard's handling of bad keys is
    tested in tests/api/test_guard.py.
    """
    broken = list(negated_parameters(case.meta))
    return bool(broken) and all(
        name.lower() == "authorization" and location == ParameterLocation.HEADER
        for name, location in broken
    )


@schema.hook
def after_call(context: Any, case: schemathesis.Case, response: Any) -> None:
    STATS.record(case.operation.label, response.status_code)


def foreign_ids_are_not_served(res: Resources) -> Any:
    """A check: a request naming the other tenant's dataset or job never gets a 2xx."""

    def check(ctx: Any, response: Any, case: schemathesis.Case) -> None:
        named = (_strings_in(case.path_parameters) | _strings_in(case.body)) & res.foreign_ids
        if named and 200 <= response.status_code < 300:
            raise AssertionError(
                f"Another tenant's object was served: the request names {sorted(named)} and "
                f"got {response.status_code}; it must look missing (404, or 422 in a body)"
            )

    check.__name__ = "foreign_ids_are_not_served"
    return check


@schema.parametrize()
def test_api_conforms_to_openapi_document(
    case: schemathesis.Case, api_url: str, api_log: Path, fuzz_resources: Resources
) -> None:
    """Every response conforms to the document and no request makes the server fail.

    A failure is recorded (``conftest.Finding``) and the run goes on, so that one early failure,
    such as an error's content type, does not hide the others or cut the request count;
    the operation's test then fails with every distinct failure and its shortest request.
    """
    aim_at_real_resources(case, fuzz_resources)
    headers = fuzz_resources.headers
    log_size = api_log.stat().st_size
    response = case.call(base_url=api_url, headers=headers)
    try:
        case.validate_response(
            response,
            headers=headers,
            additional_checks=[foreign_ids_are_not_served(fuzz_resources)],
            transport_kwargs={"base_url": api_url, "headers": headers},
        )
    except FailureGroup as group:
        status = response.status_code
        logged = _logged_exception(api_log, log_size) if status >= 500 else None
        server_error = f"{logged[1]}\n    raised: {logged[0]}" if logged else None
        repro = case.as_curl_command(headers=headers, base_url=api_url)
        for failure in group.exceptions:
            # Schemathesis tells failures apart by kind (and status, media type...); a rejected
            # request is also told apart by each rule the server's problem document names.
            rejected = failure.code in REJECTIONS and status < 500
            for rule in _rejected_rules(response) if rejected else [""]:
                where = logged[0] if logged else ""
                key = (failure.code, failure.title, failure._unique_key, where, rule)
                finding = Finding(
                    check=f"{failure.code} {failure.title}",
                    status=status,
                    message=failure.message + (f"\nRejected: {rule}" if rule else ""),
                    repro=repro,
                    response=f"{status} {response.headers.get('content-type', [''])[0]} "
                    f"{response.text[:300]}",
                    server_error=server_error,
                )
                STATS.add(case.operation.label, key, finding)


#: Schema-valid request rejected, undocumented status code.
REJECTIONS = {"ST202", "ST103"}


def _rejected_rules(response: Any) -> list[str]:
    """The rules a problem+json response says the request broke, as ``code: message`` without
    the fields and values (``invalid_request: String should match pattern …``)."""
    try:
        problem = response.json()
    except ValueError:
        return [""]
    if not isinstance(problem, dict):
        return [""]
    messages = [e.get("message") for e in problem.get("errors") or [] if isinstance(e, dict)]
    rules = sorted({_QUOTED.sub("…", str(m))[:120] for m in messages or [problem.get("detail")]})
    return [f"{problem.get('code')}: {rule}" for rule in rules]


_QUOTED = re.compile(r"""'[^']*'|"[^"]*"|\d+(?:\.\d+)?""")


def _logged_exception(log: Path, offset: int) -> tuple[str, str] | None:
    """The last exception the API logged after ``offset``: where it was raised (the innermost
    frame in this project's code; a distinct server error) and what it says."""
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    lines = text[start:].splitlines()[1:]
    frames = [line.strip() for line in lines if line.strip().startswith('File "')]
    raised = next((line for line in lines if line and not line.startswith(" ")), "?")
    ours = [f for f in frames if "/services/" in f or "/lpft_core/" in f]
    where = (ours or frames or ["?"])[-1].replace(f"{ROOT}/", "")
    kind = raised.split(":", 1)[0]
    return f"{kind} at {where}", raised[:200]


# ---- aiming generated requests at ids that exist ---------------------------------------------
#
# Drawn ids almost never exist, so without this every operation on /jobs/{job_id} would only
# ever answer 404. Ids are known only once the server runs, after the coverage and example
# cases were built at collection, so they are substituted here, just before each request.
# The choice hashes the generated value: the same case always gets the same id (the run stays
# reproducible), and Hypothesis still explores all of them. Only components generated in
# positive mode are touched, so an invalid request stays invalid where schemathesis made it so.


def _pick(key: object, options: list[Any]) -> Any:
    return options[zlib.crc32(repr(key).encode()) % len(options)]


def _positive(case: schemathesis.Case, location: ParameterLocation) -> bool:
    meta = case.meta
    return meta is None or not meta.is_negative_at(location)


def aim_at_real_resources(case: schemathesis.Case, res: Resources) -> None:
    """Replace some drawn ids in ``case`` by ids that exist (in place).

    A request that could destroy the shared resources is only ever aimed at the other
    tenant's, which it must not reach: a ``DELETE``, and a probe with a method the operation
    does not declare (schemathesis sends those to check for 405; the server may route it).
    """
    jobs = [res.succeeded_job, res.succeeded_job, res.queued_job, res.foreign_job]
    datasets = [*res.datasets.values(), res.foreign_dataset]
    method = case.method.upper()
    if method == "DELETE" or method != case.operation.method.upper():
        jobs, datasets = [res.foreign_job], [res.foreign_dataset]
    params = case.path_parameters
    if params and _positive(case, ParameterLocation.PATH):
        if isinstance(params.get("job_id"), str):
            params["job_id"] = _pick(params["job_id"], [params["job_id"], *jobs])
        if isinstance(params.get("dataset_id"), str):
            params["dataset_id"] = _pick(params["dataset_id"], [params["dataset_id"], *datasets])
        if isinstance(params.get("name"), str):
            params["name"] = _pick(params["name"], [params["name"], *res.plot_names])

    body = case.body
    if not isinstance(body, dict) or not _positive(case, ParameterLocation.BODY):
        return
    # Keep the drawn ids, make them all "real" (a request that can succeed), or "mix" them.
    mode = _pick(body, ["keep", "real", "real", "mix"])
    if mode == "keep":
        return
    real = mode == "real"

    def a_job(value: str) -> str:
        return res.succeeded_job if real else _pick(value, [value, *jobs])

    def a_dataset(value: str, split: str) -> str:
        if real:
            return res.datasets.get(split, res.datasets["train"])
        return _pick(value, [value, *datasets])

    for key in ("job_id", "source_job"):  # predict; an analysis of a finished job
        if isinstance(body.get(key), str):
            body[key] = a_job(body[key])
    if isinstance(body.get("dataset"), str):  # recalibrate
        body["dataset"] = a_dataset(body["dataset"], "validation")
    if isinstance(body.get("dataset"), dict):  # a job's splits
        for split, value in body["dataset"].items():
            if isinstance(value, str):
                body["dataset"][split] = a_dataset(value, split)
    if isinstance(body.get("eval_sets"), dict):
        for name, value in body["eval_sets"].items():
            if isinstance(value, str):
                body["eval_sets"][name] = a_dataset(value, "test")
    if real and isinstance(body.get("records"), list):  # a JSON dataset upload
        body["records"] = [
            {"text": "a good film", "label": "pos"},
            {"text": "a bad film", "label": "neg"},
        ]


def _strings_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings_in(v) for v in value)) if value else set()
    return set()
