"""A job request checked against the store and turned into its record and lpft_core spec.

Everything a job needs is checked here, before it is stored or queued, so that a job never
fails later for a reason known now. The datasets are checked from what was recorded when they
were uploaded (rows per label, single texts or pairs), by the rules ``build_splits`` applies
to the rows in the worker: a request never reads a dataset file, however large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lpft_contract.integrations import IntegrationStatus
from lpft_contract.records import DatasetRecord, JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.tasks import queue_for_device
from lpft_contract.volume import Volume
from pydantic import BaseModel, ValidationError

from lpft_api.errors import Conflict, Unprocessable
from lpft_api.model_policy import check_model, check_model_policy
from lpft_api.schemas import (
    AnalysisJobCreate,
    CompareJobCreate,
    DatasetRef,
    FinetuneJobCreate,
    HyperparametersIn,
    JobCreate,
    RecalibrateRequest,
    SweepJobCreate,
)
from lpft_api.services.integrations import checked_integrations
from lpft_api.services.sweeps import serving
from lpft_api.settings import ApiSettings
from lpft_core import (
    HEAD_NORM_SCALES,
    AnalysisSpec,
    CompareSpec,
    DataFiles,
    FinetuneSpec,
    Hyperparameters,
    JobKind,
    JobSpec,
    RecalibrateSpec,
    Resume,
    SplitShape,
    SweepSpec,
    check_grid_trials,
    check_search_space,
    check_split_shapes,
    job_kind,
)

#: A job request of any kind: ``POST /jobs`` takes a ``JobCreate``, ``POST
#: /jobs/{id}/recalibrate`` a ``RecalibrateRequest``.
JobRequest = BaseModel


@dataclass(frozen=True)
class JobInputs:
    """What a request names, looked up and checked: the files the job reads, the model it
    starts from (or the finished job's model it reads) and its training options."""

    data: DataFiles
    model: str | None = None
    model_dir: str | None = None
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    seeds: list[int] = field(default_factory=list)


def job_record(
    job_id: str, tenant: str, body: JobCreate, stores: Stores, settings: ApiSettings
) -> JobRecord:
    """The record of a new ``finetune``, ``compare`` or ``analysis`` job, spec included.

    Raises:
        Unprocessable: a seed, dataset, source job, model or eval set the job cannot use.
        DataError: the datasets' splits do not fit together (too few classes or rows, mixed
            single texts and pairs, a label train lacks).
        ConfigError: options lpft_core refuses.
    """
    seeds = _seeds(body)
    seed = seeds[0] if seeds else body.seed
    hyper = body.hyperparameters.model_dump()
    hyperparameters = Hyperparameters(**hyper, seed=seed)
    if len(body.eval_sets) > settings.max_eval_sets:
        raise Unprocessable(
            f"{len(body.eval_sets)} eval sets; the limit is {settings.max_eval_sets} per job",
            field="eval_sets",
        )
    if isinstance(body, SweepJobCreate):
        check_sweep(body, hyperparameters, settings)
    model = check_model(body.model, settings.models_dir)
    integrations = checked_integrations(body.integrations, tenant, body.kind, settings)
    dataset, source = _dataset_and_source(body, tenant, stores)
    inputs = JobInputs(
        model=model,
        data=_checked_data(tenant, dataset, body.eval_sets, stores),
        model_dir=Volume.model_key(source.id) if source else None,
        hyperparameters=hyperparameters,
        seeds=seeds,
    )
    methods = getattr(body, "methods", None)
    return JobRecord(
        id=job_id,
        tenant=tenant,
        kind=body.kind,
        method=body.method.value if isinstance(body, FinetuneJobCreate | SweepJobCreate) else None,
        methods=[m.value for m in methods] if methods is not None else None,
        source_job=source.id if source else None,
        model=body.model,
        dataset=dataset.model_dump(),
        eval_sets=body.eval_sets,
        hyperparameters={**hyper, "seed": seed, **({"seeds": seeds} if seeds else {})},
        queue=queue_for_device(hyper["device"], settings.auto_queue).value,
        spec=core_spec(body, inputs, job_id, settings).to_dict(),
        integrations=integrations,
    )


def check_job_model(body: JobCreate, settings: ApiSettings) -> None:
    """Refuse the job's model if the operator does not allow it or it is too large. Apart
    from ``job_record``'s checks since it may ask the hub: a retry of a job already created
    must find that job without it, even while the hub is down.

    Raises:
        Unprocessable: see ``check_model_policy``.
        HubUnavailable: the hub did not answer how large the model is.
    """
    check_model_policy(check_model(body.model, settings.models_dir), settings)


def recalibration_record(
    job_id: str, source: JobRecord, body: RecalibrateRequest, stores: Stores, settings: ApiSettings
) -> JobRecord:
    """The record of a job that fits a new temperature for ``source``'s model (a sweep's:
    its best trial's, which the record then names as its source); it runs on the queue
    ``source`` trained on.

    Raises:
        Conflict: ``source`` is not a succeeded finetune job, or its tracker run is still
            being logged.
        Unprocessable: the tenant has no such dataset.
    """
    if not job_kind(source.kind).serves or source.status != JobStatus.SUCCEEDED:
        raise Conflict(
            f"job {source.id} is a {source.status.value} {source.kind} job; recalibrate a "
            "succeeded finetune job"
        )
    if any(i.status == IntegrationStatus.PENDING for i in source.integrations):
        # A sweep's tracker reads its best trial's model while it logs: the same wait.
        raise Conflict(
            f"job {source.id}'s MLflow run is still being logged (its integrations are "
            "pending), and a re-calibration logs into it; re-calibrate once they are not "
            f"(GET /jobs/{source.id}), in seconds to a minute"
        )
    # A sweep's model is its best trial's: the new temperature is written there, and the
    # worker fetches and publishes back the model of the job the record names.
    source = serving(source, stores)
    dataset = _dataset(stores, source.tenant, body.dataset, "dataset")
    inputs = JobInputs(data=DataFiles(train=dataset.path), model_dir=Volume.model_key(source.id))
    return JobRecord(
        id=job_id,
        tenant=source.tenant,
        kind=JobKind.RECALIBRATE,
        method=None,
        source_job=source.id,
        model=source.model,
        dataset={"train": dataset.id},
        hyperparameters={},
        queue=source.queue,
        spec=core_spec(body, inputs, job_id, settings).to_dict(),
        # A re-calibration updates its source's runs; each shows pending until it has.
        integrations=[
            i.model_copy(update={"status": IntegrationStatus.PENDING, "error": None})
            for i in source.integrations
        ],
    )


def core_spec(body: JobRequest, inputs: JobInputs, job_id: str, settings: ApiSettings) -> JobSpec:
    """The lpft_core spec the worker runs, for a request of any kind: the one place where
    the API's names become the library's. A kind that resumes (``Resume``) checkpoints in
    the job's checkpoint directory. Its paths are keys in the artifact store (``Volume``):
    each worker finds them under its own copy of the store."""
    kind = _KIND_OF_REQUEST[type(body)]
    resumes = job_kind(kind).resume is not Resume.FROM_START
    dirs = JobDirs(
        output_dir=Volume.model_key(job_id),
        checkpoint_dir=Volume.checkpoint_key(job_id) if resumes else None,
    )
    return KIND_REQUESTS[kind].build_spec(body, inputs, dirs, settings.max_text_chars)


@dataclass(frozen=True)
class JobDirs:
    """Where a new job writes its outputs, and its checkpoints (``None``: its kind does not
    resume)."""

    output_dir: str
    checkpoint_dir: str | None


def _finetune_spec(
    body: FinetuneJobCreate, inputs: JobInputs, dirs: JobDirs, max_text_chars: int
) -> FinetuneSpec:
    return FinetuneSpec(
        method=body.method,
        data=inputs.data,
        output_dir=dirs.output_dir,
        model=inputs.model,
        hyperparameters=inputs.hyperparameters,
        max_text_chars=max_text_chars,
        checkpoint_dir=dirs.checkpoint_dir,
        seeds=inputs.seeds,
    )


def _compare_spec(
    body: CompareJobCreate, inputs: JobInputs, dirs: JobDirs, max_text_chars: int
) -> CompareSpec:
    return CompareSpec(
        data=inputs.data,
        output_dir=dirs.output_dir,
        model=inputs.model,
        methods=body.methods,
        hyperparameters=inputs.hyperparameters,
        ntk_samples=body.ntk_samples,
        max_text_chars=max_text_chars,
        seeds=inputs.seeds,
        checkpoint_dir=dirs.checkpoint_dir,
    )


def _analysis_spec(
    body: AnalysisJobCreate, inputs: JobInputs, dirs: JobDirs, max_text_chars: int
) -> AnalysisSpec:
    return AnalysisSpec(
        data=inputs.data,
        output_dir=dirs.output_dir,
        model=inputs.model,
        model_dir=inputs.model_dir,
        ntk="ntk" in body.analyses,
        features="features" in body.analyses,
        methods=body.methods,
        ntk_samples=body.ntk_samples,
        hyperparameters=inputs.hyperparameters,
        max_text_chars=max_text_chars,
        checkpoint_dir=dirs.checkpoint_dir,
    )


def _recalibrate_spec(
    body: RecalibrateRequest, inputs: JobInputs, dirs: JobDirs, max_text_chars: int
) -> RecalibrateSpec:
    assert inputs.model_dir is not None, "a re-calibration reads a finished job's model"
    return RecalibrateSpec(
        model_dir=inputs.model_dir,
        data=inputs.data.train,
        output_dir=dirs.output_dir,
        name=body.dataset,
        max_text_chars=max_text_chars,
    )


def _sweep_spec(
    body: SweepJobCreate, inputs: JobInputs, dirs: JobDirs, max_text_chars: int
) -> SweepSpec:
    preset = body.search_space if isinstance(body.search_space, str) else None
    return SweepSpec(
        method=body.method,
        data=inputs.data,
        output_dir=dirs.output_dir,
        search_space=_search_space(body),
        n_trials=body.n_trials,
        parallelism=body.parallelism,
        objective=body.objective.metric.removeprefix("validation."),
        direction=body.objective.direction,
        sampler=body.sampler,
        pruner=body.pruner,
        model=inputs.model,
        hyperparameters=inputs.hyperparameters,
        max_text_chars=max_text_chars,
        preset=preset,
        checkpoint_dir=dirs.checkpoint_dir,
    )


def _search_space(body: SweepJobCreate) -> dict[str, dict[str, Any]]:
    """The ranges as lpft_core takes them; the ``head_norm`` preset's grid of scales."""
    if isinstance(body.search_space, str):
        return {"head_norm_scale": {"type": "categorical", "choices": list(HEAD_NORM_SCALES)}}
    return {
        name: param.model_dump(exclude_defaults=True) | {"type": param.type}
        for name, param in body.search_space.items()
    }


def check_sweep(body: SweepJobCreate, base: Hyperparameters, settings: ApiSettings) -> None:
    """The sweep's caps, and each bound (or choice) within the limits the API sets a finetune
    job's option to and those lpft_core does (from ``base``, the options the search leaves),
    before any store is asked.

    Raises:
        Unprocessable: naming the field, e.g. ``search_space.learning_rate.high``.
    """
    if body.n_trials > settings.max_trials:
        raise Unprocessable(
            f"{body.n_trials} trials; the limit is {settings.max_trials} per sweep "
            "(LPFT_MAX_TRIALS)",
            field="n_trials",
        )
    if body.parallelism > body.n_trials:
        raise Unprocessable(
            f"parallelism {body.parallelism} is above n_trials ({body.n_trials})",
            field="parallelism",
        )
    if body.parallelism >= settings.max_active_jobs_per_tenant:
        raise Unprocessable(
            f"parallelism {body.parallelism}: the sweep and its running trials count among "
            f"your unfinished jobs, at most {settings.max_active_jobs_per_tenant}; use at most "
            f"{settings.max_active_jobs_per_tenant - 1}",
            field="parallelism",
        )
    if body.sampler == "grid" and body.pruner == "hyperband":
        raise Unprocessable("hyperband pruning needs a sampler that is not grid", field="pruner")
    ranges = {} if isinstance(body.search_space, str) else body.search_space  # a preset's
    for name, param in ranges.items():
        if name not in HyperparametersIn.model_fields:
            continue  # lpft_core names it (unknown, or not searchable)
        values = {"low": param.low, "high": param.high} | {
            f"choices[{i}]": choice for i, choice in enumerate(param.choices)
        }
        for where, value in values.items():
            if value is None:
                continue
            if param.type == "int" and where in ("low", "high") and value == int(value):
                value = int(value)
            try:
                HyperparametersIn.model_validate({name: value})
            except ValidationError as exc:
                message = exc.errors()[0]["msg"]
                raise Unprocessable(
                    f"{message} (as a finetune job's {name})", field=f"search_space.{name}.{where}"
                ) from None
    space = check_search_space(_search_space(body), base, body.sampler)
    if body.sampler == "grid":
        check_grid_trials(space, body.n_trials)


@dataclass(frozen=True)
class KindRequest:
    """The API's half of a registered kind (``lpft_core.JOB_KINDS``): the request that
    creates its jobs, and how that request, once checked, becomes the kind's spec."""

    request: type[BaseModel]
    build_spec: Callable[[Any, JobInputs, JobDirs, int], JobSpec]


#: One entry per registered kind, in the registry's order (``tests/test_kinds.py`` holds the
#: two together).
KIND_REQUESTS: dict[JobKind, KindRequest] = {
    JobKind.FINETUNE: KindRequest(FinetuneJobCreate, _finetune_spec),
    JobKind.COMPARE: KindRequest(CompareJobCreate, _compare_spec),
    JobKind.ANALYSIS: KindRequest(AnalysisJobCreate, _analysis_spec),
    JobKind.RECALIBRATE: KindRequest(RecalibrateRequest, _recalibrate_spec),
    JobKind.SWEEP: KindRequest(SweepJobCreate, _sweep_spec),
}
_KIND_OF_REQUEST = {entry.request: kind for kind, entry in KIND_REQUESTS.items()}


def _seeds(body: JobCreate) -> list[int]:
    """The job's seeds (empty: one run with ``seed``). Its first run is the model kept, so an
    explicit ``seed`` that is not the first would be silently ignored: refused instead."""
    seeds: list[int] = getattr(body, "seeds", None) or []
    if seeds and "seed" in body.model_fields_set and body.seed != seeds[0]:
        raise Unprocessable(
            f"seed {body.seed} is not the first of seeds {seeds}; leave seed out or make it "
            "the first seed (its run is the model that is kept)",
            field="seed",
        )
    return seeds


def _dataset_and_source(
    body: JobCreate, tenant: str, stores: Stores
) -> tuple[DatasetRef, JobRecord | None]:
    """The datasets the job reads, and the finished job an analysis looks at: a job analysed
    without a dataset is analysed on its own."""
    source_job = body.source_job if isinstance(body, AnalysisJobCreate) else None
    if source_job is None:
        if body.dataset is None:
            raise Unprocessable(
                "give a dataset, or a source_job whose dataset is used", field="dataset"
            )
        return body.dataset, None
    source = stores.jobs.get_job(source_job, tenant)
    if source is None:
        raise Unprocessable(f"no job {source_job!r}", field="source_job")
    if not job_kind(source.kind).serves or source.status != JobStatus.SUCCEEDED:
        raise Unprocessable(
            f"job {source_job} is a {source.status.value} {source.kind} job; analyse a "
            "succeeded finetune job",
            field="source_job",
        )
    # A sweep is analysed through its best trial's model, which the worker fetches.
    return body.dataset or DatasetRef(**source.dataset), serving(source, stores)


def _checked_data(
    tenant: str, dataset: DatasetRef, eval_sets: dict[str, str], stores: Stores
) -> DataFiles:
    """The files behind the dataset ids, once their recorded shapes pass the split rules."""
    splits = {
        split: _dataset(stores, tenant, dataset_id, f"dataset.{split}")
        for split, dataset_id in dataset.model_dump().items()
        if dataset_id
    }
    extra = {
        name: _dataset(stores, tenant, dataset_id, f"eval_sets.{name}")
        for name, dataset_id in eval_sets.items()
    }
    shapes = {split: _shape(record) for split, record in splits.items()}
    check_split_shapes(
        shapes["train"],
        shapes.get("validation"),
        shapes.get("test"),
        eval_sets={name: _shape(record) for name, record in extra.items()},
        names={
            **{split: record.id for split, record in splits.items()},
            **{name: f"eval_sets.{name}" for name in extra},
        },
    )
    paths = {split: record.path for split, record in splits.items()}
    return DataFiles(
        train=paths["train"],
        validation=paths.get("validation"),
        test=paths.get("test"),
        eval_sets={name: record.path for name, record in extra.items()},
    )


def _dataset(stores: Stores, tenant: str, dataset_id: str, field: str) -> DatasetRecord:
    record = stores.datasets.get(tenant, dataset_id)
    if record is None:  # another tenant's dataset is as good as missing
        raise Unprocessable(f"no dataset {dataset_id!r}", field=field)
    return record


def _shape(record: DatasetRecord) -> SplitShape:
    """What the upload recorded of a dataset, as the split rules read it (a dataset uploaded
    before label types were recorded leaves ``1`` against ``"1"`` to the worker's check)."""
    label_type = {"int": int, "str": str}.get(record.label_type or "")
    return SplitShape(label_counts=record.label_counts, pair=record.pair, label_type=label_type)
