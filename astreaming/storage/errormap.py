"""Translate HTTP statuses, aiohttp and OS exceptions into :mod:`astreaming.errors`, once, at the boundary.

Backends wrap their I/O in ``try/except`` and call these functions (the httpx
``map_httpcore_exceptions`` pattern), so the rest of astreaming only ever sees the typed errors:

=====================================  ===============================================
cause                                  error
=====================================  ===============================================
404, 410                               ObjectNotFound (not retried)
401, 403                               PermissionDenied (not retried)
408, 429, 5xx                          TransientStorageError (``retry_after`` from header)
reset, refused, payload error, timeout TransientStorageError
other 4xx                              StorageError (not retried)
=====================================  ===============================================

OS errors of local objects are mapped by :mod:`astreaming.storage.oserrors`, apart: the local backend
(a ``remote`` that is a path, as on a shared filesystem) must not import aiohttp (~0.2 s, ~8 MB).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import aiohttp

from astreaming.errors import ObjectNotFound, PermissionDenied, StorageError, TransientStorageError
from astreaming.storage.urls import redact

if TYPE_CHECKING:
    from astreaming.storage.base import BackendStats

T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not delta-seconds: try the HTTP-date form
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def from_status(
    status: int,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    detail: str = "",
    what: str = "request",
) -> StorageError:
    """The typed error for an HTTP error ``status`` on ``url`` (redacted in the message)."""
    shown = redact(url)
    tail = f": {detail.strip()[:300]}" if detail and detail.strip() else ""
    msg = f"{shown}: {what} failed with HTTP {status}{tail}"
    if status in (404, 410):
        return ObjectNotFound(f"{shown}: object not found (HTTP {status}){tail}", url=shown)
    if status in (401, 403):
        return PermissionDenied(f"{shown}: access denied (HTTP {status}){tail}", url=shown)
    if status in _RETRYABLE_STATUS or status >= 500:
        retry_after = retry_after_seconds((headers or {}).get("Retry-After"))
        return TransientStorageError(msg, url=shown, retry_after=retry_after)
    return StorageError(msg, url=shown)


def map_aiohttp(e: BaseException, url: str, *, what: str = "request") -> StorageError | None:
    """The typed error for an aiohttp/network exception, or ``None`` if ``e`` is not one."""
    shown = redact(url)
    if isinstance(e, aiohttp.ClientResponseError):
        headers = dict(e.headers) if e.headers else None
        return from_status(e.status, url, headers=headers, detail=str(e.message), what=what)
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        # Retried (resolvers glitch), but the message says what to check if it persists.
        return TransientStorageError(
            f"{shown}: {what} failed: cannot resolve host {e.host!r} ({e.os_error.strerror or e}); "
            "check the URL or the endpoint setting",
            url=shown,
        )
    if isinstance(e, aiohttp.ClientConnectorError) and isinstance(e.os_error, ConnectionRefusedError):
        return TransientStorageError(
            f"{shown}: {what} failed: connection refused by {e.host}:{e.port}; is the server or "
            "endpoint running there?",
            url=shown,
        )
    if isinstance(e, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)):
        kind = type(e).__name__
        return TransientStorageError(f"{shown}: {what} failed ({kind}: {e})", url=shown)
    return None


__all__ = ["call_mapped", "from_status", "map_aiohttp", "retry_after_seconds"]


async def call_mapped(stats: BackendStats, url: str, what: str, op: Callable[[], Awaitable[T]]) -> T:
    """Run one aiohttp-based request, counting it, with client errors translated once at the boundary.

    Typed :class:`StorageError` s pass through (counted as errors); aiohttp, timeout and connection errors
    become the typed error :func:`map_aiohttp` chooses; anything else propagates untouched.
    """
    stats.requests += 1
    try:
        return await op()
    except StorageError:
        stats.errors += 1
        raise
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
        stats.errors += 1
        mapped = map_aiohttp(e, url, what=what)
        assert mapped is not None
        raise mapped from e
