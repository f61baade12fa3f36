"""The aiohttp plumbing shared by the HTTP-based backends (http, gs): session, status check, streaming."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from yarl import URL

from astreaming.storage import firstbyte, versions
from astreaming.storage.base import CHUNK_SIZE, check_length
from astreaming.storage.errormap import from_status
from astreaming.storage.partfile import PartFile
from astreaming.storage.shared import Lease, acquire

#: Headers sent with every request. We store and verify raw bytes (hashes are over the stored object),
#: so transparent compression must not happen: ask for identity instead of aiohttp's default gzip.
BASE_HEADERS = {"Accept-Encoding": "identity"}


def request_url(url: str) -> URL:
    """The URL to request for ``url``, its query string sent exactly as given.

    A signed query (Azure SAS, S3/GCS presigned) is valid only byte for byte: re-quoting it the way
    yarl normally does (``%3A`` becomes ``:``) breaks the signature. The path is quoted as usual.
    """
    base, sep, query = url.partition("?")
    if not sep:
        return URL(base)
    return URL(f"{URL(base)}?{query}", encoded=True)


async def shared_session(timeout: float, max_connections: int) -> Lease[aiohttp.ClientSession]:
    """A lease on the running loop's session for these settings (see :mod:`astreaming.storage.shared`).

    Every HTTP-based backend of the process on this loop with the same timeout and pool size shares one
    session, so one connection pool; the last lease released closes it.
    """
    return await acquire(
        ("aiohttp", (timeout, max_connections)), lambda: make_session(timeout, max_connections)
    )


def make_session(timeout: float, max_connections: int) -> aiohttp.ClientSession:
    """A new pooled session (backends share one through :func:`shared_session`).

    ``timeout`` bounds connecting and each socket read (so a stall is noticed), not the whole transfer;
    the whole attempt is bounded by the retry policy's ``asyncio.timeout``.
    """
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        auto_decompress=False,
        headers=BASE_HEADERS,
    )


async def raise_for_status(resp: aiohttp.ClientResponse, url: str, what: str) -> None:
    """Raise the typed error for an error response (reading a short error body for the message).

    Called as soon as a response's headers are in, so it also tells a watcher of the request's first
    byte (:mod:`astreaming.storage.firstbyte`) that they arrived.
    """
    firstbyte.arrived()
    if resp.status < 400:
        return
    try:
        detail = (await resp.content.read(2048)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        detail = ""
    raise from_status(resp.status, url, headers=resp.headers, detail=detail, what=what)


def announced_length(resp: aiohttp.ClientResponse) -> int | None:
    """Content-Length of a response whose body arrives unmodified, else ``None``."""
    if resp.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        return None
    return resp.content_length


def version_of(resp: aiohttp.ClientResponse) -> str | None:
    """The version an answer reports: GCS's content hashes, else its generation, else a strong ETag.

    GCS sends the whole object's hashes (``x-goog-hash``: crc32c, and md5 unless it is composite) with
    every answer, ranged ones too. They change with the bytes and only with them (a content token): the
    same bytes uploaded again (a conversion rerun) are a new generation, which must not fail a job whose
    cache holds the old upload. A generation or an ETag is opaque (:mod:`astreaming.storage.versions`).
    A weak ``W/`` ETag only says the content is equivalent, so it pins nothing.
    """
    hashes = resp.headers.get("x-goog-hash")
    if hashes:
        return f"content {hashes}"
    generation = resp.headers.get("x-goog-generation")
    if generation:
        return f"generation {generation}"
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return f"ETag {etag}"
    return None


def report_version(url: str, resp: aiohttp.ClientResponse) -> None:
    """Check an answer's version against the pinned one (:func:`astreaming.storage.versions.answered`)."""
    hashes = resp.headers.get("x-goog-hash")
    md5 = None
    if hashes:
        for part in hashes.split(","):
            name, _, value = part.strip().partition("=")
            if name == "md5":
                md5 = versions.md5_of_base64(value)
    versions.answered(url, version_of(resp), content=bool(hashes), md5=md5)


async def stream_to_file(resp: aiohttp.ClientResponse, dest: Path, url: str) -> int:
    """Stream a response body into ``dest`` through a ``.part`` file; check the announced length and
    the version (:mod:`astreaming.storage.versions`)."""
    report_version(url, resp)
    async with PartFile(dest, url) as part:
        async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
            await part.write(chunk)
        return await part.commit(expected=announced_length(resp))


async def range_into(
    resp: aiohttp.ClientResponse, url: str, start: int, end: int, sink: Callable[[bytes], Awaitable[None]]
) -> int:
    """Hand the body of a response to a ``Range: bytes=start-(end-1)`` request to ``sink``, chunk by chunk.

    Returns the bytes handed over: none for 416 (the range starts past the object's end); bytes
    ``[start, end)`` of the body of a server that ignored the Range header and sent the whole object.
    """
    if resp.status == 416:
        return 0
    await raise_for_status(resp, url, "range read")
    report_version(url, resp)
    if resp.status != 206:
        data = (await read_body(resp, url, limit=end))[start:end]
        if data:
            await sink(data)
        return len(data)
    got = 0
    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
        await sink(chunk)
        got += len(chunk)
    check_length(url, got, announced_length(resp))
    return got


async def read_body(resp: aiohttp.ClientResponse, url: str, limit: int | None = None) -> bytes:
    """Read a body (at most ``limit`` bytes when given) and check it against Content-Length."""
    if limit is None:
        data = await resp.read()
        check_length(url, len(data), announced_length(resp))
        return data
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = await resp.content.read(min(CHUNK_SIZE, limit - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


__all__ = [
    "BASE_HEADERS",
    "announced_length",
    "make_session",
    "raise_for_status",
    "range_into",
    "read_body",
    "shared_session",
    "stream_to_file",
    "report_version",
    "version_of",
]
