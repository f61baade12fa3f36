"""Write a download into a ``.part`` file and publish it with an atomic rename.

Every backend's :meth:`~astreaming.storage.base.Backend.download` goes through :class:`PartFile`, so
the guarantees hold alike for all of them:

- bytes go to a unique ``<dest>.<pid>.<token>.part`` in the destination directory (same filesystem, so
  the final ``os.replace`` is atomic); ``dest`` is never opened for writing;
- on any exception, including ``asyncio.CancelledError``, the ``.part`` file is removed and ``dest``
  keeps whatever it had before (nothing, or a previous complete copy);
- the byte count is checked against the announced length before publishing (short body ->
  TransientStorageError, which the retry policy retries);
- disk writes run in a worker thread in batches of ``buffer_size`` bytes so a slow disk never stalls
  the event loop that serves every other download. No fsync: a crash may lose a published file's
  pages, but then its hash check fails and it is fetched again — durability is not worth a sync per shard.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from astreaming.crashpoints import crash_point
from astreaming.diskerrors import disk_error
from astreaming.errors import CacheError
from astreaming.storage.base import check_length, discard, part_path

T = TypeVar("T")

#: Bytes gathered in memory before one write syscall in the worker thread. A download holds up to twice
#: this for a moment (its chunks and their join): eight concurrent S3 downloads held 38-50 MB at 4 MB,
#: 10-15 MB at 1 MB (``tests/storage/test_download_footprint.py``).
WRITE_BUFFER = 1 << 20


def write_error(dest: Path, e: OSError) -> CacheError:
    """The CacheError for a failed local write (disk full, read-only cache, permissions)."""
    return disk_error(dest, e)


async def settle(fut: asyncio.Future[T], on_cancel: Callable[[], None] | None = None) -> T:
    """Await a worker-thread future to its end, even if we are cancelled meanwhile.

    A call already handed to a thread cannot be stopped; returning early would let it keep writing
    (for example into a file descriptor that is closed and reused). On cancellation ``on_cancel`` is
    called (to ask the thread to stop), the thread is waited for, and the cancellation is re-raised.
    """
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not cancelled and on_cancel is not None:
                on_cancel()
            cancelled = True
        except BaseException:
            break
    if cancelled:
        raise asyncio.CancelledError
    return fut.result()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class PartFile:
    """Async context manager owning one ``.part`` file for ``dest``.

    Example::

        async with PartFile(dest, url) as part:
            async for chunk in body:
                await part.write(chunk)
            n = await part.commit(expected=content_length)

    Leaving the block without :meth:`commit` (an exception, a cancellation) discards the ``.part``.

    Args:
        dest: Final path.
        url: The source URL, for error messages.
        buffer_size: Bytes to gather before a write in the worker thread.
    """

    def __init__(self, dest: Path, url: str, *, buffer_size: int = WRITE_BUFFER) -> None:
        self.dest = Path(dest)
        self.url = url
        self.path = part_path(self.dest)
        self.written = 0
        self._buffer_size = buffer_size
        self._chunks: list[bytes] = []
        self._pending = 0
        self._fd: int | None = None
        self._committed = False

    async def __aenter__(self) -> PartFile:
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: the name is unique per call; an existing file means something is badly wrong.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise write_error(self.dest, e) from e
        return self

    async def write(self, data: bytes) -> None:
        """Append ``data`` (buffered; flushed to disk in a worker thread)."""
        if not data:
            return
        self._chunks.append(bytes(data))
        self._pending += len(data)
        self.written += len(data)
        if self._pending >= self._buffer_size:
            await self._flush()

    async def _flush(self) -> None:
        if not self._chunks:
            return
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._pending = 0
        assert self._fd is not None
        fut = asyncio.get_running_loop().run_in_executor(None, _write_all, self._fd, data)
        try:
            await settle(fut)
        except OSError as e:
            raise write_error(self.dest, e) from e

    async def commit(self, expected: int | None = None) -> int:
        """Flush, check the length against ``expected`` and rename the file onto ``dest``.

        Returns:
            Bytes written.

        Raises:
            TransientStorageError: ``written != expected`` (truncated transfer); nothing is published.
        """
        await self._flush()
        check_length(self.url, self.written, expected)
        self._close()
        crash_point("download.part_written")
        try:
            os.replace(self.path, self.dest)
        except OSError as e:
            raise write_error(self.dest, e) from e
        self._committed = True
        return self.written

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        if not self._committed:
            discard(self.path)


__all__ = ["WRITE_BUFFER", "PartFile", "settle", "write_error"]
