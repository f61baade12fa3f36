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

import os
from pathlib import Path
from types import TracebackType

from astreaming.crashpoints import crash_point
from astreaming.diskerrors import disk_error
from astreaming.errors import CacheError
from astreaming.storage.base import check_length, discard, part_path
from astreaming.storage.gather import Gather, settle

#: Bytes gathered in memory before one write syscall in the worker thread.
WRITE_BUFFER = 1 << 20


def write_error(dest: Path, e: OSError) -> CacheError:
    """The CacheError for a failed local write (disk full, read-only cache, permissions)."""
    return disk_error(dest, e)


def _write_all(fd: int, data: bytes | memoryview) -> None:
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
        self._gather = Gather(self._write_at, capacity=buffer_size)
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
        """Append ``data`` (gathered; written to disk in a worker thread)."""
        if not data:
            return
        self.written += len(data)
        try:
            await self._gather.add(data)
        except OSError as e:
            raise write_error(self.dest, e) from e

    def _write_at(self, view: memoryview, offset: int) -> None:
        # Sequential: the descriptor's position is the offset (writes never overlap: each is awaited).
        assert self._fd is not None
        _write_all(self._fd, view)

    async def commit(self, expected: int | None = None) -> int:
        """Flush, check the length against ``expected`` and rename the file onto ``dest``.

        Returns:
            Bytes written.

        Raises:
            TransientStorageError: ``written != expected`` (truncated transfer); nothing is published.
        """
        try:
            await self._gather.flush()
        except OSError as e:
            raise write_error(self.dest, e) from e
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
        self._gather.close()
        if not self._committed:
            discard(self.path)


__all__ = ["WRITE_BUFFER", "PartFile", "settle", "write_error"]
