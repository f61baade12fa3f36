"""``gs://bucket/key`` backend on gcloud-aio-storage.

gcloud-aio-storage supplies the JSON API endpoints, object-name encoding, credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application-default credentials, the GCE metadata server)
and ``STORAGE_EMULATOR_HOST``. astreaming adds what it lacks: streaming into a ``.part`` file, byte
ranges, chunked resumable uploads that never hold a file in memory, anonymous access to public buckets,
and one error mapping at the boundary. All requests share one pooled aiohttp session per backend.

Credentials: see :mod:`astreaming.storage.gcs_auth` (explicit keys, default credentials, the metadata
server, or anonymous access to public buckets when nothing is configured).
"""

from __future__ import annotations

import logging
import math
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from gcloud.aio.storage import Storage
from gcloud.aio.storage.storage import init_api_root

from astreaming.errors import ConfigError, ObjectNotFound
from astreaming.storage.base import Backend, ObjectInfo, check_range, collect_range
from astreaming.storage.errormap import call_mapped
from astreaming.storage.gcs_auth import GCSAuth
from astreaming.storage.gcs_upload import ResumableUpload, simple_upload
from astreaming.storage.httpsession import (
    raise_for_status,
    range_into,
    read_body,
    shared_session,
    stream_to_file,
)
from astreaming.storage.shared import Lease
from astreaming.storage.urls import parse_url

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Resumable-upload chunk size; GCS requires a multiple of 256 KiB for every chunk but the last.
UPLOAD_CHUNK = 16 << 20
_QUANTUM = 256 << 10


def _content_type(key: str) -> str:
    # Shards (.mds, .zstd, ...) have no registered type; say what they are rather than send an empty header.
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class _NoToken:
    """Stands in for gcloud's Token when anonymous, so gcloud never reads credentials from the environment."""

    async def get(self) -> str:
        return ""


class _Storage(Storage):  # type: ignore[misc]
    """gcloud-aio-storage's client with our authorisation headers (adds anonymous access)."""

    def __init__(self, auth: Callable[[], Awaitable[dict[str, str]]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._auth = auth

    async def _headers(self) -> dict[str, str]:
        return await self._auth()


class GCSBackend(Backend):
    """Backend for ``gs://bucket/key``.

    Args:
        timeout: Connect and socket-read timeout in seconds.
        emulator_host: ``http://host:port`` of an emulator (fake-gcs-server) or a proxy in front of one;
            default: the ``STORAGE_EMULATOR_HOST`` environment variable. Emulators get no credentials.
        api_root: Base URL of a real, authenticated JSON API endpoint used instead of Google's (for
            example a Private Service Connect endpoint).
        service_file: Path of a service-account or authorized-user JSON key; default: gcloud's lookup
            (``GOOGLE_APPLICATION_CREDENTIALS``, application-default credentials, metadata server).
        anonymous: ``True`` never sends credentials; ``False`` requires them; ``None`` (default) goes
            anonymous when no credentials are configured (see :mod:`astreaming.storage.gcs_auth`).
        max_connections: Size of the connection pool (concurrent requests).
        upload_chunk_size: Chunk size of resumable uploads (rounded up to 256 KiB).
        resumable_threshold: Files larger than this are uploaded with a resumable session.
        page_size: Objects per listing page.
    """

    scheme = ("gs",)

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        emulator_host: str | None = None,
        api_root: str | None = None,
        service_file: str | None = None,
        anonymous: bool | None = None,
        max_connections: int = 256,
        upload_chunk_size: int = UPLOAD_CHUNK,
        resumable_threshold: int = 8 << 20,
        page_size: int = 1000,
    ) -> None:
        super().__init__(timeout=timeout)
        host = emulator_host or (None if api_root else os.environ.get("STORAGE_EMULATOR_HOST")) or None
        if host and not host.startswith(("http://", "https://")):
            host = f"http://{host}"
        if api_root and not host:
            # A real endpoint (private service connect, a proxy): authenticated like Google's own.
            self._is_dev, self.api_root = False, api_root.rstrip("/")
        else:
            self._is_dev, self.api_root = init_api_root(host.rstrip("/") if host else None)
        self.service_file = service_file
        self.anonymous = True if self._is_dev else anonymous
        self.max_connections = max_connections
        self.upload_chunk_size = max(_QUANTUM, -(-upload_chunk_size // _QUANTUM) * _QUANTUM)
        self.resumable_threshold = resumable_threshold
        self.page_size = page_size
        self._int_timeout = max(1, math.ceil(self.timeout))  # gcloud-aio-storage wants whole seconds
        self._client: _Storage | None = None
        self._client_http: Lease[aiohttp.ClientSession] | None = None
        self._client_auth: GCSAuth | None = None

    # -- clients -----------------------------------------------------------------------------------

    async def _storage(self) -> _Storage:
        if self._closed:
            raise ConfigError("GCSBackend is closed")
        if self._client is None:
            # Leased inside the running loop: fork-safe, and no session outlives its loop. The session
            # (a connection pool) is shared with the process's other HTTP backends on this loop.
            lease = await shared_session(self.timeout, self.max_connections)
            if self._client is not None:  # another request of ours set up the client meanwhile
                await lease.release()
                return self._client
            self._client_http = lease
            session = lease.client
            auth = self._client_auth = GCSAuth(
                session, service_file=self.service_file, anonymous=self.anonymous
            )
            # Our token (or a placeholder when anonymous) is handed over so gcloud-aio-storage never
            # builds its own from the environment; every request takes its headers from GCSAuth.
            self._client = _Storage(
                self._auth_headers, session=session, api_root=self.api_root, token=auth.token or _NoToken()
            )
        return self._client

    async def _auth_headers(self) -> dict[str, str]:
        await self._storage()
        assert self._client_auth is not None
        return await self._client_auth.headers()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        lease, self._client_http = self._client_http, None
        self._client_auth = None
        if client is not None:
            await client.close()  # a no-op for the session it shares with us, which the lease closes:
        if lease is not None:
            await lease.release()
        await super().aclose()

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        parsed = parse_url(url)
        if parsed.scheme != "gs":
            raise ConfigError(f"GCSBackend cannot serve {url!r}")
        return parsed.bucket, parsed.key

    def _object_url(self, bucket: str, key: str) -> str:
        return f"{self.api_root}/storage/v1/b/{bucket}/o/{quote(key, safe='')}"

    async def _do(self, url: str, what: str, fn: Callable[[_Storage], Awaitable[T]]) -> T:
        async def op() -> T:
            return await fn(await self._storage())

        return await call_mapped(self.stats, url, what, op)

    async def _get(self, s: _Storage, url: str, headers: dict[str, str] | None = None) -> Any:
        """Start a media GET (aiohttp response as an async context manager); errors raise typed."""
        bucket, key = self._split(url)
        all_headers = {**(await self._auth_headers()), **(headers or {})}
        return s.session.session.get(
            self._object_url(bucket, key), params={"alt": "media"}, headers=all_headers
        )

    # -- operations --------------------------------------------------------------------------------

    async def read_bytes(self, url: str) -> bytes:
        async def go(s: _Storage) -> bytes:
            async with await self._get(s, url) as resp:
                await raise_for_status(resp, url, "read")
                return await read_body(resp, url)

        data = await self._do(url, "read", go)
        self.stats.bytes_downloaded += len(data)
        return data

    async def download(self, url: str, dest: Path) -> int:
        async def go(s: _Storage) -> int:
            async with await self._get(s, url) as resp:
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

        async def go(s: _Storage) -> int:
            async with await self._get(s, url, {"Range": f"bytes={start}-{end - 1}"}) as resp:
                return await range_into(resp, url, start, end, sink)

        n = await self._do(url, "range read", go)
        self.stats.bytes_downloaded += n
        return n

    async def stat(self, url: str) -> ObjectInfo:
        bucket, key = self._split(url)

        async def go(s: _Storage) -> ObjectInfo:
            meta = await s.download_metadata(bucket, key, timeout=self._int_timeout)
            return ObjectInfo(
                url=url, size=int(meta["size"]), etag=str(meta.get("generation") or meta["etag"])
            )

        return await self._do(url, "stat", go)

    async def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        bucket, prefix = self._split(url_prefix)
        token: str | None = None
        while True:
            params = {"prefix": prefix, "maxResults": str(self.page_size)}
            if token:
                params["pageToken"] = token

            async def go(s: _Storage, params: dict[str, str] = params) -> dict[str, Any]:
                page: dict[str, Any] = await s.list_objects(bucket, params=params, timeout=self._int_timeout)
                return page

            page = await self._do(url_prefix, "list", go)
            for item in page.get("items", []):
                etag = item.get("generation") or item.get("etag")
                yield ObjectInfo(
                    url=f"gs://{bucket}/{item['name']}",
                    size=int(item["size"]),
                    etag=str(etag) if etag else None,
                )
            token = page.get("nextPageToken")
            if not token:
                return

    async def upload(self, src: Path, url: str) -> None:
        # Both kinds survive an answer cut mid-body (see astreaming.storage.gcs_upload): a simple upload
        # raises a transient error the caller's policy retries; a resumable one asks its session what it
        # committed and continues.
        bucket, key = self._split(url)
        size = os.path.getsize(src)
        endpoint = f"{self.api_root}/upload/storage/v1/b/{bucket}/o"
        if size <= self.resumable_threshold:

            async def simple(s: _Storage) -> None:
                headers = {**(await self._auth_headers()), "Content-Type": _content_type(key)}
                await simple_upload(s.session.session, endpoint, key, Path(src), url, headers=headers)

            await self._do(url, "upload", simple)
        else:
            await self._do(url, "upload", lambda s: self._resumable(s, Path(src), url, size))
        self.stats.bytes_uploaded += size

    async def _resumable(self, s: _Storage, src: Path, url: str, size: int) -> None:
        """Chunked resumable upload: one session, ``upload_chunk_size`` bytes in memory at a time."""
        bucket, key = self._split(url)
        http = s.session.session
        headers = await self._auth_headers()
        async with http.post(
            f"{self.api_root}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "resumable", "name": key},
            headers={
                **headers,
                "X-Upload-Content-Length": str(size),
                "X-Upload-Content-Type": _content_type(key),
                "Content-Type": "application/json",
            },
            data=b"{}",
        ) as resp:
            await raise_for_status(resp, url, "upload")
            session_uri = self._rebase(resp.headers["Location"])
        await ResumableUpload(
            http, session_uri, src, url, size, self.upload_chunk_size, self._auth_headers
        ).run()

    def _rebase(self, location: str) -> str:
        # An emulator answers with its own address; when a proxy stands in front of it (fault tests),
        # keep talking to the proxy the client was pointed at.
        if not self._is_dev:
            return location
        loc, root = urlsplit(location), urlsplit(self.api_root)
        return urlunsplit((root.scheme, root.netloc, loc.path, loc.query, loc.fragment))

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, url: str) -> None:
        bucket, key = self._split(url)

        async def go(s: _Storage) -> None:
            await s.delete(bucket, key, timeout=self._int_timeout)

        await self._do(url, "delete", go)


__all__ = ["GCSBackend"]
