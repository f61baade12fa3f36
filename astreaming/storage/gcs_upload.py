"""Uploads to GCS's JSON API that survive a connection cut in the middle of the server's answer.

A simple (``uploadType=media``) upload is one request: if its answer is cut (the JSON describing the new
object is truncated, or a hop lowered Content-Length to match the cut so the body looks complete), the
client cannot tell whether the object was stored. Sending it again is safe (it replaces the object with
the same bytes), so such an answer is a :class:`~astreaming.errors.TransientStorageError` and the
caller's retry policy sends it again.

A resumable upload is a session: chunks are PUT to the session URI. When a chunk's request fails
transiently (reset, 5xx, a cut answer), the session is still there: GCS's protocol is to ask it how many
bytes it committed (``PUT`` with ``Content-Range: bytes */SIZE`` and no body; the 308 answer's ``Range``
says ``bytes=0-LAST``) and continue from there, rather than start a new session and send everything
again. A 308 after a chunk also says how much of it was committed: the rest is sent again.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from astreaming.errors import StorageError, TransientStorageError
from astreaming.storage.errormap import from_status, map_aiohttp
from astreaming.storage.httpsession import raise_for_status
from astreaming.storage.urls import redact

#: Transient failures in a row, with no byte committed in between, after which a resumable upload gives
#: up on its session (the caller's retry policy may then start a new one).
MAX_RESUMES = 3

Headers = Callable[[], Awaitable[dict[str, str]]]


def _committed(resp: aiohttp.ClientResponse, url: str) -> int:
    """Bytes a resumable session holds, from a 308 answer's ``Range: bytes=0-LAST`` (none: nothing)."""
    value = resp.headers.get("Range")
    if not value:
        return 0
    try:
        first, last = value.strip().removeprefix("bytes=").split("-", 1)
        if int(first) != 0:
            raise ValueError(value)
        return int(last) + 1
    except ValueError:
        raise StorageError(
            f"{redact(url)}: upload session answered with a malformed Range header {value!r}", url=redact(url)
        ) from None


def check_answer(body: bytes, url: str, size: int) -> None:
    """Check the JSON a finished upload answers with: it must parse and report ``size`` bytes.

    Raises:
        TransientStorageError: The answer was cut (it does not parse) or reports another size; sending
            the object again replaces it, so the caller retries.
    """
    shown = redact(url)
    try:
        meta = json.loads(body)
    except ValueError:
        raise TransientStorageError(
            f"{shown}: upload answer was cut ({len(body)} bytes that are not complete JSON); "
            "the object is sent again",
            url=shown,
        ) from None
    stored = meta.get("size") if isinstance(meta, dict) else None
    if stored is None or str(stored) != str(size):
        raise TransientStorageError(
            f"{shown}: upload answer reports {stored!r} bytes stored, not {size}; the object is sent again",
            url=shown,
        )


async def simple_upload(
    http: aiohttp.ClientSession, endpoint: str, key: str, src: Path, url: str, *, headers: dict[str, str]
) -> None:
    """One-request media upload of ``src`` to ``endpoint`` (``.../upload/storage/v1/b/BUCKET/o``)."""
    size = src.stat().st_size
    with open(src, "rb") as f:  # aiohttp streams the file object, reading it in a thread
        async with http.post(
            endpoint,
            params={"uploadType": "media", "name": key},
            data=f,
            headers={**headers, "Content-Length": str(size)},
        ) as resp:
            await raise_for_status(resp, url, "upload")
            body = await resp.read()
    check_answer(body, url, size)


class ResumableUpload:
    """One resumable upload session, sending ``chunk_size`` bytes at a time (never the whole file).

    Args:
        http: The session requests go through.
        session_uri: The session's URI (from the initiating POST's ``Location``).
        src: The file to send.
        url: The object's ``gs://`` URL, for messages.
        size: The file's size in bytes.
        chunk_size: Bytes per PUT (a multiple of 256 KiB, as GCS requires for all but the last).
        headers: Gives the authorisation headers for each request.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        session_uri: str,
        src: Path,
        url: str,
        size: int,
        chunk_size: int,
        headers: Headers,
    ) -> None:
        self.http = http
        self.session_uri = session_uri
        self.src = src
        self.url = url
        self.size = size
        self.chunk_size = chunk_size
        self.headers = headers
        #: Times the session was asked for its committed offset after a failed chunk.
        self.resumes = 0

    async def run(self) -> None:
        """Send the file; return when the session reports the object complete."""
        offset, failures = 0, 0
        with open(self.src, "rb") as f:
            while True:
                failed = False
                try:
                    done, committed = await self._put_chunk(f, offset)
                except TransientStorageError:
                    failed, failures = True, failures + 1
                    if failures > MAX_RESUMES:
                        raise
                    self.resumes += 1
                    done, committed = await self._query()
                if done:
                    return
                if committed > offset:
                    failures = 0  # progress: the budget is for failures in a row
                elif committed == offset and not failed:
                    # A session that takes none of a chunk it answered for counts as a failure too.
                    failures += 1
                    if failures > MAX_RESUMES:
                        raise TransientStorageError(
                            f"{redact(self.url)}: upload session took no byte of {MAX_RESUMES + 1} chunks "
                            f"in a row at offset {offset}",
                            url=redact(self.url),
                        )
                elif committed < offset:
                    # A session never forgets bytes it acknowledged; trusting this would resend them.
                    raise StorageError(
                        f"{redact(self.url)}: upload session went back from {offset} to {committed} bytes",
                        url=redact(self.url),
                    )
                offset = committed

    async def _put_chunk(self, f: io.BufferedReader, offset: int) -> tuple[bool, int]:
        await asyncio.to_thread(f.seek, offset)
        chunk = await asyncio.to_thread(f.read, self.chunk_size)
        if not chunk and offset < self.size:
            raise StorageError(f"{self.src} shrank during upload to {self.url}", url=redact(self.url))
        last = offset + len(chunk) >= self.size
        total = str(self.size) if last else "*"
        crange = f"bytes {offset}-{offset + len(chunk) - 1}/{total}"
        # A file object, not the raw bytes: aiohttp writes raw bytes over 1 MiB in one go on the loop,
        # and warns (ResourceWarning) that it may block it; a BytesIO is streamed.
        return await self._send(io.BytesIO(chunk), crange)

    async def _query(self) -> tuple[bool, int]:
        """Ask the session what it committed (an empty PUT with ``Content-Range: bytes */SIZE``)."""
        return await self._send(b"", f"bytes */{self.size}")

    async def _send(self, data: io.BytesIO | bytes, crange: str) -> tuple[bool, int]:
        """One PUT to the session: ``(True, size)`` if the object is complete, else ``(False, committed)``.

        A completing answer must describe an object of the file's size: a session finalized with fewer
        bytes (an emulator that takes the status query for the last chunk does that) is an error.
        """
        headers = {**(await self.headers()), "Content-Range": crange}
        try:
            async with self.http.put(self.session_uri, data=data, headers=headers) as r:
                if r.status in (200, 201):
                    check_answer(await r.read(), self.url, self.size)
                    return True, self.size
                if r.status == 308:
                    return False, _committed(r, self.url)
                if r.status in (404, 410):
                    # The session expired or was lost: a new session may succeed, so retryable.
                    raise TransientStorageError(
                        f"{redact(self.url)}: upload session gone (HTTP {r.status}); start a new one",
                        url=redact(self.url),
                    )
                if r.status >= 400:
                    await raise_for_status(r, self.url, "upload")
                raise from_status(
                    r.status, self.url, detail="unexpected resumable-upload status", what="upload"
                )
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            mapped = map_aiohttp(e, self.url, what="upload")
            assert mapped is not None
            raise mapped from e


__all__ = ["MAX_RESUMES", "ResumableUpload", "check_answer", "simple_upload"]
