"""Pins: a shard being read is protected from eviction by every process on the node, crash-safely.

A pin is a shared ``flock`` on the shard's first file, taken through a descriptor of its own; an evictor
must take the exclusive lock (without waiting) before it deletes the shard's files. The kernel releases a
dead process's locks, so a pin can never outlive its reader, and taking or dropping one costs a few
system calls and no write to the ledger - cheap enough for every shard switch of the consumer.

The descriptor that holds a pin is never the one a reader maps, so dropping a pin cannot disturb a mapping,
and a mapping never pins by accident.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

from astreaming.cache.ledger import fds_closed_after_fork, try_flock
from astreaming.cache.publish import names_same_file
from astreaming.crashpoints import crash_point

__all__ = ["Pins", "exclusive"]


def _open_same(path: Path, flags: int) -> int | None:
    """Open ``path`` and lock it with ``flags`` without waiting; None if it is missing or busy.

    After locking, the descriptor must still be the file at ``path``: the previous holder may have
    deleted it (eviction) - a lock on a deleted inode protects nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        if not try_flock(fd, flags):
            os.close(fd)
            return None
        if not names_same_file(path, fd):
            os.close(fd)
            return None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[bool]:
    """Hold the exclusive lock of ``path`` if nobody pins it (yields False if pinned or missing).

    Delete the shard's files inside the block: a reader that opened the file meanwhile finds, once it
    gets its shared lock, that the path no longer names its descriptor, and fetches the shard again.
    """
    fd = _open_same(path, fcntl.LOCK_EX)
    if fd is None:
        yield False
        return
    fds_closed_after_fork.add(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        fds_closed_after_fork.discard(fd)
        os.close(fd)


class Pins:
    """Reference-counted pins of one process, keyed by shard id (thread-safe).

    Pinning is on the consumer's path at every shard switch, so a shard's descriptor stays open between
    pins (up to ``max_open`` of them, least recently used closed first): re-pinning costs a ``flock`` and
    an ``fstat``, no path lookup. A descriptor whose file was deleted meanwhile (``st_nlink == 0``: an
    eviction) is closed and the shard reported missing.

    Args:
        targets: The file to lock for each shard (its first raw file), or None for a shard that cannot
            be evicted (no pin needed).
        max_open: Descriptors kept open while their shard is not pinned.
    """

    def __init__(self, targets: Sequence[Path | None], *, max_open: int = 128) -> None:
        self._targets = targets
        self.max_open = max_open
        self._lock = threading.Lock()
        self._fds: OrderedDict[int, tuple[int, int]] = OrderedDict()  # shard -> (fd, inode), open
        self._counts: dict[int, int] = {}  # shard -> pins held
        self._pid = os.getpid()

    def pin(self, shard: int) -> int | None:
        """Pin ``shard``; returns the inode of its file, or None if it is not in the cache now.

        A None means the shard was evicted (or is being evicted this instant): fetch it again.
        """
        self._check_fork()
        target = self._targets[shard]
        if target is None:
            return 0
        with self._lock:
            count = self._counts.get(shard, 0)
            if count:
                self._counts[shard] = count + 1
                return self._fds[shard][1]
            opened = self._fds.pop(shard, None)
            if opened is not None:
                fd, inode = opened
                if try_flock(fd, fcntl.LOCK_SH) and os.fstat(fd).st_nlink > 0:
                    self._remember(shard, fd, inode, pinned=True)
                    crash_point("pin")
                    return inode
                _release(fd)  # evicted (unlinked) or being evicted: look at the path again
            fresh = _open_same(target, fcntl.LOCK_SH)
            if fresh is None:
                return None
            fds_closed_after_fork.add(fresh)
            inode = os.fstat(fresh).st_ino
            self._remember(shard, fresh, inode, pinned=True)
            crash_point("pin")
            return inode

    def _remember(self, shard: int, fd: int, inode: int, *, pinned: bool) -> None:
        # Caller holds the lock.
        self._fds[shard] = (fd, inode)
        self._fds.move_to_end(shard)
        if pinned:
            self._counts[shard] = 1
        if len(self._fds) > self.max_open:
            for old in list(self._fds):
                if len(self._fds) <= self.max_open:
                    break
                if old not in self._counts:
                    _release(self._fds.pop(old)[0])

    def unpin(self, shard: int) -> None:
        """Drop one pin of ``shard`` (its descriptor stays open, unlocked, for the next pin)."""
        with self._lock:
            count = self._counts.get(shard, 0)
            if count > 1:
                self._counts[shard] = count - 1
                return
            if count == 1:
                del self._counts[shard]
                fd = self._fds[shard][0]
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def prune(self) -> None:
        """Close the unpinned descriptors of files deleted since (evicted): they hold disk space."""
        with self._lock:
            for shard, (fd, _) in list(self._fds.items()):
                if shard not in self._counts and os.fstat(fd).st_nlink == 0:
                    del self._fds[shard]
                    _release(fd)

    def pinned(self) -> list[int]:
        """Shards pinned now."""
        with self._lock:
            return list(self._counts)

    def close(self) -> None:
        """Drop every pin and close every descriptor."""
        with self._lock:
            fds, self._fds, self._counts = self._fds, OrderedDict(), {}
        if self._pid == os.getpid():
            for fd, _ in fds.values():
                _release(fd)

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # The parent's descriptors were closed in the child at fork; start empty.
            self._fds, self._counts = OrderedDict(), {}
            self._lock = threading.Lock()
            self._pid = os.getpid()


def _release(fd: int) -> None:
    # Unlock explicitly: a forked child could hold a copy of the descriptor and keep the pin alive.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    fds_closed_after_fork.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)
