"""Produce a cache file exactly once per node, atomically, without blocking the event loop.

A file in the cache is only ever created by renaming a finished temp file into place, so its existence
means it is complete: readers never need a lock. Producers of the same path, in this or other processes,
serialise on an advisory ``flock`` of ``<path>.lock``. The kernel drops a dead process's flock, and the
next producer deletes the temp files the dead one left behind, so a crash costs a retry, never a stuck or
half-written shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from astreaming.crashpoints import crash_point
from astreaming.errors import CacheError

__all__ = ["FileLock", "ensure_file", "lock_path", "names_same_file", "remove_stale_temps", "temp_path"]

_TMP_MARK = ".tmp-"
_POLL_START = 0.001
_POLL_MAX = 0.05


def lock_path(path: Path) -> Path:
    """The lock file guarding the production of ``path``."""
    return path.with_name(path.name + ".lock")


def temp_path(path: Path) -> Path:
    """A fresh temp name next to ``path`` (same directory, so the final rename is atomic)."""
    return path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}")


def remove_stale_temps(path: Path) -> int:
    """Delete temp files of ``path`` left by crashed producers. Call only while holding the lock."""
    prefix = path.name + _TMP_MARK
    removed = 0
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(prefix):
            # Best effort: a failure here must not mask the error that made us clean up.
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


def names_same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not unlinked or replaced since it was opened):
    a lock taken on a file that was deleted meanwhile protects nothing."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


class FileLock:
    """An exclusive ``flock`` on ``<path>.lock``, acquired by polling so the event loop never blocks.

    The lock file is unlinked on release. To stay correct with that, a lock is only considered held if the
    locked descriptor still is the file at the lock path (a waiter may have opened the old file just before
    it was unlinked; it then retries on the new one).
    """

    def __init__(self, path: Path) -> None:
        self.path = lock_path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        return self._try_lock_fd(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))

    def _try_lock_fd(self, fd: int) -> bool:
        """Lock the open lock file ``fd`` (taking ownership of it); False if busy or stale."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        if not names_same_file(self.path, fd):
            # We locked a file its previous holder already unlinked; it guards nothing any more.
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self) -> None:
        """Wait for the lock, polling with a short exponential back-off (cancellable at any time)."""
        delay = _POLL_START
        while not self.try_acquire():
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def release(self) -> None:
        """Unlink the lock file, then drop the lock (closing the descriptor releases the flock)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(fd)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """``async with lock.held():`` acquire, run the body, always release."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


async def ensure_file(path: Path, produce: Callable[[Path], Awaitable[None]]) -> bool:
    """Make sure ``path`` exists, producing it at most once across the processes sharing its directory.

    Args:
        path: The final cache file.
        produce: Writes the complete file to the temp path it is given (for example a download or a
            decompression). It must not touch ``path`` itself.

    Returns:
        ``True`` if this call produced the file, ``False`` if it was already there (a hit), possibly
        because another process produced it while we waited for the lock.

    Raises:
        CacheError: ``produce`` returned without writing its temp file.
        Exception: whatever ``produce`` raised; its temp file is removed first.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    async with lock.held():
        # Re-check under the lock: whoever held it before us may have published the file.
        if path.exists():
            return False
        remove_stale_temps(path)
        tmp = temp_path(path)
        try:
            await produce(tmp)
            if not tmp.is_file():
                raise CacheError(f"producing {path}: the producer returned without writing {tmp.name}")
            crash_point("publish.before_rename")
            os.replace(tmp, path)
            crash_point("publish.after_rename")
        except BaseException:
            # Includes cancellation: never leave a half-written temp behind for longer than needed.
            remove_stale_temps(path)
            raise
    return True
