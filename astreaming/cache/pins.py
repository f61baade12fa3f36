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
from collections.abc import Iterator, Sequence
from pathlib import Path

from astreaming.cache.ledger import _inherited, _try_flock

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
        if not _try_flock(fd, flags):
            os.close(fd)
            return None
        try:
            on_disk = os.stat(path)
        except FileNotFoundError:
            on_disk = None
        held = os.fstat(fd)
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
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
    _inherited.add(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        _inherited.discard(fd)
        os.close(fd)


class Pins:
    """Reference-counted pins of one process, keyed by shard id (thread-safe).

    Args:
        targets: The file to lock for each shard (its first raw file), or None for a shard that cannot
            be evicted (no pin needed).
    """

    def __init__(self, targets: Sequence[Path | None]) -> None:
        self._targets = targets
        self._lock = threading.Lock()
        self._held: dict[int, tuple[int, int, int]] = {}  # shard -> (fd, count, inode)
        self._pid = os.getpid()

    def pin(self, shard: int) -> int | None:
        """Pin ``shard``; returns the inode of its file, or None if it is not in the cache now.

        A None means the shard was evicted (or is being evicted this instant): fetch it again.
        """
        self._check_fork()
        target = self._targets[shard]
        with self._lock:
            held = self._held.get(shard)
            if held is not None:
                fd, count, inode = held
                self._held[shard] = (fd, count + 1, inode)
                return inode
            if target is None:
                return 0
            opened = _open_same(target, fcntl.LOCK_SH)
            if opened is None:
                return None
            fd = opened
            _inherited.add(fd)
            inode = os.fstat(fd).st_ino
            self._held[shard] = (fd, 1, inode)
            return inode

    def unpin(self, shard: int) -> None:
        """Drop one pin of ``shard``."""
        with self._lock:
            held = self._held.get(shard)
            if held is None:
                return
            fd, count, inode = held
            if count > 1:
                self._held[shard] = (fd, count - 1, inode)
                return
            del self._held[shard]
        _release(fd)

    def pinned(self) -> list[int]:
        """Shards pinned now."""
        with self._lock:
            return list(self._held)

    def close(self) -> None:
        """Drop every pin."""
        with self._lock:
            held, self._held = self._held, {}
        if self._pid == os.getpid():
            for fd, _, _ in held.values():
                _release(fd)

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # The parent's descriptors were closed in the child at fork; start empty.
            self._held = {}
            self._lock = threading.Lock()
            self._pid = os.getpid()


def _release(fd: int) -> None:
    # Unlock explicitly: a forked child could hold a copy of the descriptor and keep the pin alive.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    _inherited.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)
