"""Blocking access to a storage backend from worker threads, for ``astreaming verify``.

The CPU side of a check (hashing, decompressing, decoding) runs in a worker thread and pulls bytes
through file-like readers, so the streaming decompressors of :mod:`astreaming.format.compression` work
unchanged. Each request is a coroutine submitted to the event loop that owns the backend; the thread
waits for its result. :class:`RangeStream` reads an object front to back by range requests of
``chunk`` bytes with the next one already in flight, so a check holds at most two chunks of one file and
writes nothing to disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from astreaming.errors import AstreamingError, TransientStorageError
from astreaming.storage import Backend, ObjectInfo, RetryPolicy, redact, with_retries

__all__ = ["BlockingRemote", "RangeStream", "Stopped"]

_T = TypeVar("_T")


class Stopped(AstreamingError):
    """The run is being stopped (an error elsewhere, or Ctrl-C): no new request is made."""


class BlockingRemote:
    """Blocking ``stat`` and ``read_range`` with retries, for worker threads; ``stop()`` cancels them all.

    Args:
        backend: The backend, used on ``loop`` only.
        loop: The running loop that owns ``backend``.
        policy: Retries and the per-attempt timeout.
    """

    def __init__(self, backend: Backend, loop: asyncio.AbstractEventLoop, policy: RetryPolicy) -> None:
        self.backend = backend
        self.loop = loop
        self.policy = policy
        self.bytes_read = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[object]] = set()
        self._stopped = False

    def submit(self, make: Callable[[], Awaitable[_T]]) -> concurrent.futures.Future[_T]:
        """Start ``make()`` on the loop; its future is cancelled by :meth:`stop`."""

        async def call() -> _T:
            return await make()

        with self._lock:
            if self._stopped:
                raise Stopped("stopped")
            future = asyncio.run_coroutine_threadsafe(call(), self.loop)
            self._pending.add(future)  # type: ignore[arg-type]
            self.requests += 1
        future.add_done_callback(self._pending.discard)  # type: ignore[arg-type]
        return future

    def stat(self, url: str) -> ObjectInfo:
        """The object's size (ObjectNotFound when it is absent), retried like a download."""
        return self.submit(
            lambda: with_retries(self.policy, lambda: self.backend.stat(url), url=url, what="stat")
        ).result()

    def read_async(self, url: str, start: int, end: int) -> concurrent.futures.Future[bytes]:
        """Start reading bytes ``[start, end)`` of ``url``."""

        async def read() -> bytes:
            data = await with_retries(
                self.policy, lambda: self.backend.read_range(url, start, end), url=url, what="read"
            )
            with self._lock:
                self.bytes_read += len(data)
            if len(data) != end - start:
                # The object shrank under us (rewritten during the check): no longer the one we stat'ed.
                raise TransientStorageError(
                    f"{redact(url)}: bytes {start}-{end} returned {len(data)} bytes (object changed?)",
                    url=redact(url),
                )
            return data

        return self.submit(read)

    def read(self, url: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``url`` (blocking)."""
        return self.read_async(url, start, end).result()

    def stop(self) -> None:
        """Refuse new requests and cancel those in flight (waiting threads see CancelledError)."""
        with self._lock:
            self._stopped = True
            pending = list(self._pending)
        for future in pending:
            future.cancel()


class RangeStream(io.RawIOBase):
    """Object ``url`` of ``size`` bytes as a readable stream of range requests, one chunk read ahead."""

    def __init__(self, remote: BlockingRemote, url: str, size: int, chunk: int) -> None:
        super().__init__()
        self._remote = remote
        self._url = url
        self._size = size
        self._chunk = chunk
        self._requested = 0  # bytes asked for so far
        self._ahead: concurrent.futures.Future[bytes] | None = self._next()
        self._buf = memoryview(b"")

    def _next(self) -> concurrent.futures.Future[bytes] | None:
        if self._requested >= self._size:
            return None
        start = self._requested
        self._requested = min(self._size, start + self._chunk)
        return self._remote.read_async(self._url, start, self._requested)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._buf:
            if self._ahead is None:
                return 0
            current, self._ahead = self._ahead, None
            data = current.result()
            self._ahead = self._next()  # the next request runs while this chunk is processed
            self._buf = memoryview(data)
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.cancel()
            self._ahead = None
        self._buf = memoryview(b"")
        super().close()
