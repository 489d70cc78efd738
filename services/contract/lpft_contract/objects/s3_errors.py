"""obstore's exceptions in this package's terms. obstore raises a few types and puts the S3
error code (NoSuchBucket, InvalidAccessKeyId, SlowDown) and the transport failure in the
message, so the message is read too. Each translated error names the setting to fix."""

from __future__ import annotations

import re

from .errors import (
    BucketMissing,
    ObjectNotFound,
    ObjectStoreAuthError,
    ObjectStoreError,
    ObjectStoreUnavailable,
)

AUTH_CODES = re.compile(
    r"InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken|AccessDenied"
    r"|status code: 40[13]"
)
#: Connection refused or reset, a body cut short, a timeout, any 5xx (503 SlowDown included).
TRANSIENT = re.compile(
    r"error sending request|HTTP error|Connect|connection|IncompleteMessage|"
    r"error decoding response body|timed out|TimedOut|status code: 5\d\d|SlowDown",
    re.IGNORECASE,
)

CREDENTIAL_SETTINGS = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or AWS_PROFILE"


S3_CODE = re.compile(r"<Code>([^<]+)</Code>")


def first_line(error: BaseException) -> str:
    """obstore's message without its debug dump and the XML body, but with the S3 code."""
    text = str(error).split("\n\nDebug source:", 1)[0]
    code = S3_CODE.search(text)
    text = text.split("<?xml", 1)[0].strip().rstrip(":")
    return f"{text} ({code.group(1)})" if code else text


def translate(error: Exception, *, url: str, key: str | None = None) -> ObjectStoreError:
    """The package's error for an obstore failure of an operation on ``key`` in ``url``."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    text = str(error)
    summary = first_line(error)
    if "NoSuchBucket" in text:
        return BucketMissing(
            f"the bucket of {url} does not exist: create it, or fix LPFT_ARTIFACTS_URL "
            f"(and AWS_ENDPOINT_URL if it is on another service) ({summary})"
        )
    if isinstance(error, PermissionDeniedError | UnauthenticatedError) or AUTH_CODES.search(text):
        return ObjectStoreAuthError(
            f"{url} refused the credentials: fix {CREDENTIAL_SETTINGS} ({summary})"
        )
    if isinstance(error, FileNotFoundError):
        return ObjectNotFound(key or "", f"no object at {key!r} in {url}")
    if TRANSIENT.search(text):
        return ObjectStoreUnavailable(
            f"{url} is unreachable or failing: check AWS_ENDPOINT_URL and the service ({summary})"
        )
    return ObjectStoreError(f"{url}: {summary}")
