"""The object store: everything that crosses processes (datasets, checkpoints, models, reports)
goes through one small interface with two backends, a local directory (the default) and any
S3-compatible bucket (the ``[s3]`` extra); obstore is imported only when an S3ObjectStore is
built."""

from .errors import (
    BucketMissing,
    IntegrityError,
    NotPublished,
    ObjectNotFound,
    ObjectStoreAuthError,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from .keys import join, validate_key, validate_prefix
from .local import LocalObjectStore
from .manifest import MANIFEST, Manifest, ManifestEntry
from .protocol import ObjectInfo, ObjectStore
from .published import fetch, is_complete, latest_complete, publish, read_manifest
from .s3 import S3ObjectStore
from .url import object_store_from_url

__all__ = [
    "MANIFEST",
    "BucketMissing",
    "IntegrityError",
    "LocalObjectStore",
    "Manifest",
    "ManifestEntry",
    "NotPublished",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreAuthError",
    "ObjectStoreError",
    "ObjectStoreUnavailable",
    "S3ObjectStore",
    "fetch",
    "is_complete",
    "join",
    "latest_complete",
    "object_store_from_url",
    "publish",
    "read_manifest",
    "validate_key",
    "validate_prefix",
]
