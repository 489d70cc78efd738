"""Uploading, finding and deleting datasets, within the tenant's quotas.

An upload is parsed and checked row by row once, here; what jobs need to know of it later
(rows per label, single texts or pairs, its size) is recorded beside it, so that no request
has to read it again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from lpft_contract.records import DatasetRecord, new_id
from lpft_contract.stores import Stores
from lpft_contract.volume import Volume
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lpft_api.errors import Conflict, NotFound, QuotaExceeded, Unprocessable
from lpft_api.schemas import DatasetList, DatasetPreview, DatasetPublic, DatasetRecordsIn
from lpft_api.services.storage import check_room
from lpft_api.settings import ApiSettings
from lpft_core import (
    FIELD_ROLES,
    DataError,
    Example,
    FieldMap,
    examples_from_file,
    option_name,
    parse_records,
    text_problem,
)


async def create_dataset(
    request: Request, tenant: str, stores: Stores, settings: ApiSettings
) -> DatasetRecord:
    """Store the dataset the request carries: a multipart ``file`` (spooled to disk by the
    form parser; JSONL, CSV or Parquet, its columns mapped by the optional ``text_field``,
    ``text_pair_field`` and ``label_field`` form fields) or JSON ``records``. The quotas are
    checked before the body is parsed, and parsing runs off the event loop, so an upload never
    holds up other tenants' requests. The rows are stored under our names (text, text_pair,
    label) whatever the file called them, so jobs never see the mapping.

    Raises:
        QuotaExceeded: the tenant has the most datasets, or bytes (of datasets and finished
            jobs), allowed.
        Unprocessable: another content type, no ``file`` part, or a bad name.
        ConfigError: a bad column mapping (naming its form field).
        RequestValidationError: JSON that is not ``{"records": [...]}``.
        DataError: a row is invalid; a mapped column is absent (naming its form field); the
            file as a whole is unreadable (naming ``file``).
    """
    count, _ = stores.quotas.dataset_usage(tenant)
    if count >= settings.max_datasets_per_tenant:
        raise QuotaExceeded(
            f"you have {count} datasets, the most allowed; delete one (DELETE /datasets/{{id}})"
        )
    quota = settings.max_stored_bytes_per_tenant
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        name, upload, fields = await _uploaded_file(request)
        check_room(stores, tenant, quota, "this upload", upload.size or 0)
        examples = await run_in_threadpool(_read_upload, upload, name, fields, settings)
    elif content_type.startswith("application/json"):
        raw = await request.body()
        check_room(stores, tenant, quota, "this upload", len(raw))
        name, examples = await run_in_threadpool(_records, raw, settings)
    else:
        raise Unprocessable(
            "send multipart/form-data with a 'file' field or JSON {\"records\": [...]}",
            field="content-type",
        )
    return await run_in_threadpool(_save, stores, tenant, name, examples)


def list_datasets(tenant: str, after: str | None, limit: int, stores: Stores) -> DatasetList:
    """A page of the tenant's datasets, newest first."""
    found = stores.datasets.list(tenant, after, limit)
    return DatasetList.of(found, [DatasetPublic.from_record(r) for r in found.items])


def get_dataset(tenant: str, dataset_id: str, stores: Stores) -> DatasetRecord:
    """The tenant's dataset ``dataset_id``.

    Raises:
        NotFound: there is none (another tenant's is as good as none).
    """
    record = stores.datasets.get(tenant, dataset_id)
    if record is None:
        raise NotFound(f"no dataset {dataset_id!r}", field="dataset_id")
    return record


def preview_dataset(tenant: str, dataset_id: str, limit: int, stores: Stores) -> DatasetPreview:
    """The first ``limit`` rows of the tenant's dataset ``dataset_id``.

    Raises:
        NotFound: there is no such dataset.
    """
    record = get_dataset(tenant, dataset_id, stores)
    rows = stores.datasets.first_rows(record, limit)
    return DatasetPreview(id=record.id, rows=rows, has_more=record.rows > len(rows))


def delete_dataset(tenant: str, dataset_id: str, stores: Stores) -> None:
    """Remove the dataset's rows and record.

    Raises:
        NotFound: no such dataset. Conflict: an unfinished job will read it.
    """
    record = get_dataset(tenant, dataset_id, stores)
    users = stores.jobs.jobs_using_dataset(tenant, dataset_id)
    if users:
        raise Conflict(
            f"unfinished jobs {', '.join(sorted(users))} use this dataset; wait for them or "
            "cancel them first"
        )
    stores.datasets.delete(record)


async def _uploaded_file(request: Request) -> tuple[str, UploadFile, FieldMap]:
    """The name, spooled ``file`` part and column mapping of the upload form; the mapping is
    checked (names bounded, distinct) before a byte of the file is parsed."""
    form = await request.form(max_files=1, max_fields=1 + len(FIELD_ROLES), max_part_size=1024)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Unprocessable("send the dataset as a form field named 'file'", field="file")
    name = str(form.get("name") or upload.filename or "upload.jsonl")
    problem = text_problem(name) if len(name) <= 200 else "more than 200 characters"
    if problem:
        raise Unprocessable(f"the dataset name holds {problem}", field="name")
    columns: dict[str, str] = {}
    for role in FIELD_ROLES:
        column = form.get(option_name(role))
        if isinstance(column, UploadFile):
            raise Unprocessable("give a column name, not a file", field=option_name(role))
        if column is not None:
            columns[role] = column
    return upload.filename or name, upload, FieldMap(**columns)


#: How much text a Parquet upload may decode to, per byte of the upload limit: text compresses
#: a few times over, and a JSONL upload of the limit's size holds about one byte of text per
#: byte; far beyond that, one upload would hold more than the tenant's storage quota allows.
PARQUET_EXPANSION = 10


def _read_upload(
    upload: UploadFile, name: str, fields: FieldMap, settings: ApiSettings
) -> list[Example]:
    """The rows of the spooled upload (Parquet is read from it a batch at a time)."""
    try:
        return examples_from_file(
            upload.file,
            name,
            max_text_chars=settings.max_text_chars,
            max_rows=settings.max_dataset_rows,
            fields=fields,
            max_decoded_bytes=PARQUET_EXPANSION * settings.max_upload_bytes,
        )
    except DataError as exc:
        # An error of no line and no column is about the file as a whole (not Parquet, no
        # rows, an unknown type): the form field to fix is 'file'.
        if exc.line is None and exc.field is None:
            exc.field = "file"
        raise


def _records(raw: bytes, settings: ApiSettings) -> tuple[str, list[Example]]:
    """The name and rows of a JSON upload; a body of the wrong form is reported like any
    other invalid request body, field by field."""
    try:
        body = DatasetRecordsIn.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    examples = parse_records(
        enumerate(body.records, start=1),
        source=body.name,
        max_text_chars=settings.max_text_chars,
        max_rows=settings.max_dataset_rows,
    )
    return body.name, examples


def _save(stores: Stores, tenant: str, name: str, examples: list[Example]) -> DatasetRecord:
    """Write the rows and record what jobs will check them by, without reading them again."""
    dataset_id = new_id("ds")
    rows = [
        {"text": e.text, **({"text_pair": e.text_pair} if e.text_pair else {}), "label": e.label}
        for e in examples
    ]
    record = DatasetRecord(
        id=dataset_id,
        tenant=tenant,
        name=Path(name).name,
        path=Volume.dataset_key(dataset_id),
        rows=len(rows),
        pair=examples[0].text_pair is not None,
        label_counts=dict(sorted(Counter(str(e.label) for e in examples).items())),
        label_type="int" if isinstance(examples[0].label, int) else "str",
    )
    return stores.datasets.save(record, rows)
