"""Uploading and listing datasets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from lpft_api.deps import DatasetId, PageDep, SettingsDep, StoresDep, TenantDep
from lpft_api.schemas import (
    MAX_PREVIEW_ROWS,
    DatasetList,
    DatasetPreview,
    DatasetPublic,
    DatasetRecordsIn,
    Problem,
)
from lpft_api.services import datasets
from lpft_core import FIELD_ROLES, MAX_FIELD_NAME_CHARS, option_name

router = APIRouter(prefix="/datasets", tags=["datasets"])
#: Bodies the handlers parse themselves, so FastAPI does not put their schemas in the
#: document; ``create_app`` adds them under ``components/schemas`` for the ``$ref``s below.
SELF_PARSED_BODIES = (DatasetRecordsIn,)

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
                            "description": ".jsonl, .csv or .parquet with text, text_pair?, "
                            "label (or the columns the *_field options name)",
                        },
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        **{
                            option_name(role): {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": MAX_FIELD_NAME_CHARS,
                                "default": role,
                                "description": f"the file's column that holds {role}",
                            }
                            for role in FIELD_ROLES
                        },
                    },
                }
            },
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{DatasetRecordsIn.__name__}"}
            },
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
    request: Request, stores: StoresDep, tenant: TenantDep, settings: SettingsDep
) -> DatasetPublic:
    """Upload a dataset (multipart file, or JSON ``records``); it is validated row by row.
    A file is JSONL, CSV or Parquet; ``text_field``, ``text_pair_field`` and ``label_field``
    name its columns when they are not text, text_pair and label, and the rows are stored
    under our names.
    The body is counted as it arrives and refused past ``LPFT_MAX_UPLOAD_BYTES`` (413); a
    file part is spooled to disk, not held in memory; parsing runs off the event loop, so an
    upload never holds up other tenants' requests."""
    record = await datasets.create_dataset(request, tenant, stores, settings)
    return DatasetPublic.from_record(record)


@router.get("", response_model=DatasetList)
def list_datasets(stores: StoresDep, tenant: TenantDep, page: PageDep) -> DatasetList:
    """The caller's datasets, newest first."""
    return datasets.list_datasets(tenant, page.after, page.limit, stores)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses={404: {"model": Problem}})
def get_dataset(dataset_id: DatasetId, stores: StoresDep, tenant: TenantDep) -> DatasetPublic:
    """One dataset and its summary."""
    return DatasetPublic.from_record(datasets.get_dataset(tenant, dataset_id, stores))


@router.get(
    "/{dataset_id}/preview", response_model=DatasetPreview, responses={404: {"model": Problem}}
)
def preview_dataset(
    dataset_id: DatasetId,
    stores: StoresDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PREVIEW_ROWS)] = 10,
) -> DatasetPreview:
    """The dataset's first ``limit`` rows as stored (``text``, ``text_pair``, ``label``,
    whatever the file named its columns), to check what an upload was read as."""
    return datasets.preview_dataset(tenant, dataset_id, limit, stores)


@router.delete(
    "/{dataset_id}", status_code=204, responses={404: {"model": Problem}, 409: {"model": Problem}}
)
def delete_dataset(dataset_id: DatasetId, stores: StoresDep, tenant: TenantDep) -> Response:
    """Delete a dataset; refused (409) while an unfinished job will read it."""
    datasets.delete_dataset(tenant, dataset_id, stores)
    return Response(status_code=204)
