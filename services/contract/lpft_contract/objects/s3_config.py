"""The S3 backend's settings, read from the standard AWS variables so that an operator
configures lpft the way they configure every other S3 client.

``AWS_PROFILE``: obstore 0.12 does not read shared credential files. When a profile is named
and no key is exported, the credentials come from botocore's provider chain through obstore's
Boto3CredentialProvider, if boto3 is installed (it refreshes expiring SSO or assumed-role
credentials too); without boto3 that is an ObjectStoreAuthError telling the operator to export
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` or install boto3. Exported keys win over a
profile, as in the AWS SDKs. With neither, obstore's own chain runs (web identity tokens,
container and instance metadata), which is what pods and cloud VMs use.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ObjectStoreAuthError

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Settings:
    """What the environment says about the S3 service (secrets kept out of the repr)."""

    endpoint: str | None = None
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    profile: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """The settings in ``environ`` (default: this process's environment); the
        S3-specific endpoint wins over the general one, as in the AWS SDKs."""
        env = os.environ if environ is None else environ

        def get(*names: str) -> str | None:
            return next((env[name] for name in names if env.get(name)), None)

        return cls(
            endpoint=get("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            region=get("AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION,
            access_key_id=get("AWS_ACCESS_KEY_ID"),
            secret_access_key=get("AWS_SECRET_ACCESS_KEY"),
            session_token=get("AWS_SESSION_TOKEN"),
            profile=get("AWS_PROFILE"),
        )

    def __repr__(self) -> str:
        return (
            f"S3Settings(endpoint={self.endpoint!r}, region={self.region!r}, "
            f"keys={'set' if self.access_key_id else 'unset'}, profile={self.profile!r})"
        )

    def store_options(self) -> dict[str, Any]:
        """The keyword arguments for obstore's S3Store that these settings make."""
        config: dict[str, Any] = {"region": self.region}
        if self.endpoint:
            config["endpoint"] = self.endpoint
        options: dict[str, Any] = {"config": config}
        if self.access_key_id:
            if not self.secret_access_key:
                raise ObjectStoreAuthError(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: export both"
                )
            config["access_key_id"] = self.access_key_id
            config["secret_access_key"] = self.secret_access_key
            if self.session_token:
                config["session_token"] = self.session_token
        elif self.profile:
            options["credential_provider"] = profile_provider(self.profile)
        return options

    @property
    def allow_http(self) -> bool:
        """A plain-http endpoint (a MinIO or moto on a private network) is allowed when the
        operator names one; obstore refuses http unless told."""
        return bool(self.endpoint and self.endpoint.startswith("http://"))


def profile_provider(profile: str) -> Any:
    """obstore's credential provider over botocore's chain for ``profile``, which reads
    ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)."""
    if importlib.util.find_spec("boto3") is None:
        raise ObjectStoreAuthError(
            f"AWS_PROFILE={profile} is set, but the S3 client cannot read profiles without "
            "boto3: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) "
            "instead, or pip install boto3"
        )
    import boto3
    from obstore.auth.boto3 import Boto3CredentialProvider

    try:
        return Boto3CredentialProvider(boto3.Session(profile_name=profile))
    except Exception as failed:  # botocore's ProfileNotFound and friends
        raise ObjectStoreAuthError(
            f"AWS_PROFILE={profile}: {failed}; fix AWS_PROFILE or the AWS credentials file"
        ) from failed
