"""Read-only ``http://`` and ``https://`` backend (GET, HEAD, Range) on aiohttp.

Any static file server works (nginx, a CDN, ``python -m http.server``, a signed URL). Listing, upload
and delete have no meaning over plain HTTP and raise ConfigError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from astreaming.errors import ConfigError, ObjectNotFound, StorageError
from astreaming.storage.base import Backend, ObjectInfo, check_range, collect_range
from astreaming.storage.errormap import call_mapped
from astreaming.storage.httpsession import (
    raise_for_status,
    range_into,
    read_body,
    request_url,
    shared_session,
    stream_to_file,
)
from astreaming.storage.shared import Lease
from astreaming.storage.urls import redact

T = TypeVar("T")


def _total_size(resp: aiohttp.ClientResponse) -> int | None:
    """Object size from a ranged GET: ``Content-Range: bytes 0-0/<total>``, or the length of a full 200."""
    if resp.status == 206:
        total = resp.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    return resp.content_length


class HTTPBackend(Backend):
    """Backend for ``http(s)://host/path`` URLs.

    Args:
        timeout: Connect and socket-read timeout in seconds.
        headers: Extra headers sent with every request (for example ``Authorization``).
        max_connections: Size of the connection pool.
    """

    scheme = ("http", "https")

    def __init__(
        self, *, timeout: float = 60.0, headers: dict[str, str] | None = None, max_connections: int = 256
    ) -> None:
        super().__init__(timeout=timeout)
        self.headers = dict(headers or {})
        self.max_connections = max_connections
        self._client: Lease[aiohttp.ClientSession] | None = None

    async def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigError("HTTPBackend is closed")
        if self._client is None:
            # Leased here, inside the running loop that uses it (fork-safe, no loop binding at init).
            lease = await shared_session(self.timeout, self.max_connections)
            if self._client is None:
                self._client = lease
            else:  # another request of ours leased one meanwhile
                await lease.release()
        return self._client.client

    async def aclose(self) -> None:
        lease, self._client = self._client, None
        if lease is not None:
            await lease.release()
        await super().aclose()

    async def _do(self, url: str, what: str, fn: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        async def op() -> T:
            return await fn(await self._session())

        return await call_mapped(self.stats, url, what, op)

    async def read_bytes(self, url: str) -> bytes:
        async def go(s: aiohttp.ClientSession) -> bytes:
            async with s.get(request_url(url), headers=self.headers) as resp:
                await raise_for_status(resp, url, "read")
                return await read_body(resp, url)

        data = await self._do(url, "read", go)
        self.stats.bytes_downloaded += len(data)
        return data

    async def download(self, url: str, dest: Path) -> int:
        async def go(s: aiohttp.ClientSession) -> int:
            async with s.get(request_url(url), headers=self.headers) as resp:
                await raise_for_status(resp, url, "download")
                return await stream_to_file(resp, Path(dest), url)

        n = await self._do(url, "download", go)
        self.stats.bytes_downloaded += n
        return n

    async def read_range(self, url: str, start: int, end: int) -> bytes:
        return await collect_range(self, url, start, end)

    async def read_range_into(
        self, url: str, start: int, end: int, sink: Callable[[bytes], Awaitable[None]]
    ) -> int:
        check_range(url, start, end)
        if start == end:
            return 0

        async def go(s: aiohttp.ClientSession) -> int:
            headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
            async with s.get(request_url(url), headers=headers) as resp:
                return await range_into(resp, url, start, end, sink)

        n = await self._do(url, "range read", go)
        self.stats.bytes_downloaded += n
        return n

    async def stat(self, url: str) -> ObjectInfo:
        async def go(s: aiohttp.ClientSession) -> ObjectInfo:
            async with s.head(request_url(url), headers=self.headers, allow_redirects=True) as resp:
                # Signed URLs (S3/GCS presigned, SAS) only allow the signed method and answer HEAD with
                # 403; some servers refuse HEAD (405) or omit its length: ask for one byte instead.
                if resp.status not in (403, 405, 501) and (
                    resp.status >= 400 or resp.content_length is not None
                ):
                    await raise_for_status(resp, url, "stat")
                    assert resp.content_length is not None
                    return ObjectInfo(url=url, size=resp.content_length, etag=resp.headers.get("ETag"))
            async with s.get(request_url(url), headers={**self.headers, "Range": "bytes=0-0"}) as resp:
                await raise_for_status(resp, url, "stat")
                size = _total_size(resp)
                if size is None:
                    raise StorageError(f"{redact(url)}: server reports no object size", url=redact(url))
                return ObjectInfo(url=url, size=size, etag=resp.headers.get("ETag"))

        return await self._do(url, "stat", go)

    async def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        raise ConfigError(f"cannot list {redact(url_prefix)}: HTTP has no listing; name the objects instead")
        yield  # pragma: no cover - makes this an async generator

    async def upload(self, src: Path, url: str) -> None:
        raise ConfigError(f"cannot upload to {redact(url)}: the http(s) backend is read-only")

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, url: str) -> None:
        raise ConfigError(f"cannot delete {redact(url)}: the http(s) backend is read-only")


__all__ = ["HTTPBackend"]
