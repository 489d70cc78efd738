"""Uploading and listing datasets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from lpft_contract.records import DatasetRecord, new_id
from lpft_contract.store import Store
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lpft_api.deps import DatasetId, SettingsDep, StoreDep, TenantDep
from lpft_api.errors import Conflict, NotFound, QuotaExceeded, Unprocessable
from lpft_api.schemas import RESOURCE_ID, DatasetList, DatasetPublic, DatasetRecordsIn, Problem
from lpft_core.data import Example, examples_from_bytes, parse_records, text_problem

router = APIRouter(prefix="/datasets", tags=["datasets"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": ".jsonl or .csv with text, text_pair?, label",
                        },
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/DatasetRecordsIn"}},
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    openapi_extra=_UPLOAD_BODY,
    responses={409: {"model": Problem}, 413: {"model": Problem}, 422: {"model": Problem}},
)
async def create_dataset(
    request: Request, store: StoreDep, tenant: TenantDep, settings: SettingsDep
) -> DatasetPublic:
    """Upload a dataset (multipart file, or JSON ``records``); it is validated row by row.
    The body is counted as it arrives and refused past ``LPFT_MAX_UPLOAD_BYTES`` (413); a
    file part is spooled to disk, not held in memory; parsing runs off the event loop, so an
    upload never holds up other tenants' requests."""
    count, used = store.dataset_usage(tenant)
    if count >= settings.max_datasets_per_tenant:
        raise QuotaExceeded(
            f"you have {count} datasets, the most allowed; delete one (DELETE /datasets/{{id}})"
        )
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        name, raw = await _uploaded_file(request)
        _check_room(used, len(raw), settings.max_stored_bytes_per_tenant)
        examples = await run_in_threadpool(
            examples_from_bytes,
            raw,
            name,
            max_text_chars=settings.max_text_chars,
            max_rows=settings.max_dataset_rows,
        )
    elif content_type.startswith("application/json"):
        raw = await request.body()
        _check_room(used, len(raw), settings.max_stored_bytes_per_tenant)
        try:
            body = await run_in_threadpool(DatasetRecordsIn.model_validate_json, raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        name = body.name
        examples = await run_in_threadpool(
            parse_records,
            enumerate(body.records, start=1),
            source=name,
            max_text_chars=settings.max_text_chars,
            max_rows=settings.max_dataset_rows,
        )
    else:
        raise Unprocessable(
            "send multipart/form-data with a 'file' field or JSON {\"records\": [...]}",
            field="content-type",
        )
    return DatasetPublic.from_record(await run_in_threadpool(_save, store, tenant, name, examples))


async def _uploaded_file(request: Request) -> tuple[str, bytes]:
    """The name and bytes of the form's ``file`` part."""
    form = await request.form(max_files=1, max_fields=2, max_part_size=1024)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Unprocessable("send the dataset as a form field named 'file'", field="file")
    name = str(form.get("name") or upload.filename or "upload.jsonl")
    problem = text_problem(name) if len(name) <= 200 else "more than 200 characters"
    if problem:
        raise Unprocessable(f"the dataset name holds {problem}", field="name")
    return upload.filename or name, await upload.read()


def _check_room(used: int, incoming: int, cap: int) -> None:
    if used + incoming > cap:
        raise QuotaExceeded(
            f"your datasets use {used} bytes and this upload {incoming}; the quota is {cap} "
            "bytes. Delete datasets you no longer need (DELETE /datasets/{id})"
        )


@router.get("", response_model=DatasetList)
def list_datasets(
    store: StoreDep,
    tenant: TenantDep,
    after: Annotated[str | None, Query(pattern=RESOURCE_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DatasetList:
    """The caller's datasets, newest first."""
    records = store.list_datasets(tenant, after, limit + 1)
    return DatasetList(
        data=[DatasetPublic.from_record(r) for r in records[:limit]],
        has_more=len(records) > limit,
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, responses={404: {"model": Problem}})
def get_dataset(dataset_id: DatasetId, store: StoreDep, tenant: TenantDep) -> DatasetPublic:
    """One dataset and its summary."""
    record = store.get_dataset(tenant, dataset_id)
    if record is None:
        raise NotFound(f"no dataset {dataset_id!r}", field="dataset_id")
    return DatasetPublic.from_record(record)


@router.delete(
    "/{dataset_id}", status_code=204, responses={404: {"model": Problem}, 409: {"model": Problem}}
)
def delete_dataset(dataset_id: DatasetId, store: StoreDep, tenant: TenantDep) -> Response:
    """Delete a dataset; refused (409) while an unfinished job will read it."""
    record = store.get_dataset(tenant, dataset_id)
    if record is None:
        raise NotFound(f"no dataset {dataset_id!r}", field="dataset_id")
    users = store.jobs_using_dataset(tenant, dataset_id)
    if users:
        raise Conflict(
            f"unfinished jobs {', '.join(sorted(users))} use this dataset; wait for them or "
            "cancel them first"
        )
    store.delete_dataset(record)
    return Response(status_code=204)


def _save(store: Store, tenant: str, name: str, examples: list[Example]) -> DatasetRecord:
    dataset_id = new_id("ds")
    rows = [
        {"text": e.text, **({"text_pair": e.text_pair} if e.text_pair else {}), "label": e.label}
        for e in examples
    ]
    record = DatasetRecord(
        id=dataset_id,
        tenant=tenant,
        name=Path(name).name,
        path=str(store.dataset_path(dataset_id)),
        rows=len(rows),
        pair=examples[0].text_pair is not None,
        label_counts=dict(sorted(Counter(str(e.label) for e in examples).items())),
    )
    return store.save_dataset(record, rows)
