"""Uploading and listing datasets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from lpft_contract.records import DatasetRecord, new_id
from lpft_contract.store import Store
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lpft_api.deps import SettingsDep, StoreDep, TenantDep
from lpft_api.errors import NotFound, PayloadTooLarge, Unprocessable
from lpft_api.schemas import DatasetList, DatasetPublic, DatasetRecordsIn, Problem
from lpft_core.data import Example, examples_from_bytes, parse_records

router = APIRouter(prefix="/datasets", tags=["datasets"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": ".jsonl or .csv with text, text_pair?, label",
                        },
                        "name": {"type": "string"},
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
    responses={413: {"model": Problem}, 422: {"model": Problem}},
)
async def create_dataset(
    request: Request, store: StoreDep, tenant: TenantDep, settings: SettingsDep
) -> DatasetPublic:
    """Upload a dataset (multipart file, or JSON ``records``); it is validated row by row."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the upload is {declared} bytes; the limit is {limit}")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=limit)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Unprocessable("send the dataset as a form field named 'file'", field="file")
        raw = await upload.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"the upload is over the limit of {limit} bytes")
        name = str(form.get("name") or upload.filename or "upload.jsonl")
        examples = examples_from_bytes(
            raw, upload.filename or name, max_text_chars=settings.max_text_chars
        )
    elif content_type.startswith("application/json"):
        try:
            body = DatasetRecordsIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        name = body.name
        examples = parse_records(
            enumerate(body.records, start=1), source=name, max_text_chars=settings.max_text_chars
        )
    else:
        raise Unprocessable(
            "send multipart/form-data with a 'file' field or JSON {\"records\": [...]}",
            field="content-type",
        )
    return DatasetPublic.from_record(_save(store, tenant, name, examples))


@router.get("", response_model=DatasetList)
def list_datasets(
    store: StoreDep,
    tenant: TenantDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DatasetList:
    """The caller's datasets, newest first."""
    records = store.list_datasets(tenant, after, limit + 1)
    return DatasetList(
        data=[DatasetPublic.from_record(r) for r in records[:limit]],
        has_more=len(records) > limit,
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, responses={404: {"model": Problem}})
def get_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep) -> DatasetPublic:
    """One dataset and its summary."""
    record = store.get_dataset(tenant, dataset_id)
    if record is None:
        raise NotFound(f"no dataset {dataset_id!r}", field="dataset_id")
    return DatasetPublic.from_record(record)


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
