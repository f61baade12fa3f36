"""Map botocore/aiobotocore exceptions to :mod:`astreaming.errors` (the S3 and OCI backends' boundary)."""

from __future__ import annotations

from typing import Any

from botocore import exceptions as bexc

from astreaming.errors import ObjectNotFound, PermissionDenied, StorageError, TransientStorageError
from astreaming.storage.errormap import from_status, map_aiohttp, retry_after_seconds
from astreaming.storage.urls import redact

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchUpload"})
_DENIED = frozenset(
    {"AccessDenied", "403", "401", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)
_TRANSIENT = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
    }
    | {"ServiceUnavailable", "503", "500", "TooManyRequests", "429"}
)
_NETWORK = (
    bexc.EndpointConnectionError,
    bexc.ConnectionClosedError,
    bexc.ReadTimeoutError,
    bexc.ConnectTimeoutError,
    bexc.IncompleteReadError,
    bexc.ResponseStreamingError,
    bexc.HTTPClientError,
)


def map_botocore(e: BaseException, url: str, what: str) -> StorageError | None:
    """The typed error for a botocore/aiobotocore exception, or ``None`` if ``e`` is not one."""
    shown = redact(url)
    if isinstance(e, bexc.ClientError):
        err = e.response.get("Error", {})
        meta = e.response.get("ResponseMetadata", {})
        code = str(err.get("Code", ""))
        status = int(meta.get("HTTPStatusCode") or 0)
        detail = f"{code}: {err.get('Message', '')}".strip(": ")
        if code in _NOT_FOUND:
            return ObjectNotFound(f"{shown}: object not found ({detail or status})", url=shown)
        if code in _DENIED:
            return PermissionDenied(f"{shown}: access denied ({detail or status})", url=shown)
        if code in _TRANSIENT:
            retry = retry_after_seconds(meta.get("HTTPHeaders", {}).get("retry-after"))
            return TransientStorageError(f"{shown}: {what} failed ({detail})", url=shown, retry_after=retry)
        if status:
            return from_status(status, url, headers=_headers(meta), detail=detail, what=what)
        return StorageError(f"{shown}: {what} failed ({detail})", url=shown)
    if isinstance(e, bexc.SSLError):
        # A certificate that fails verification will fail again: not retried, and it says what to fix.
        # (The SDK's message quotes the request URL; only the reason is kept.)
        if "CERTIFICATE_VERIFY_FAILED" in str(e):
            return StorageError(
                f"{shown}: {what} failed: the endpoint's TLS certificate failed verification; give the "
                "CA bundle with AWS_CA_BUNDLE if the endpoint uses a private CA",
                url=shown,
            )
        return TransientStorageError(f"{shown}: {what} failed: TLS error ({type(e).__name__})", url=shown)
    if isinstance(e, _NETWORK):
        return TransientStorageError(f"{shown}: {what} failed ({type(e).__name__}: {e})", url=shown)
    if isinstance(e, bexc.NoCredentialsError):
        return None
    return map_aiohttp(e, url, what=what)


def _headers(meta: dict[str, Any]) -> dict[str, str]:
    return {k.title(): str(v) for k, v in meta.get("HTTPHeaders", {}).items()}


__all__ = ["map_botocore"]
