"""A test hook: SIGKILL this process at a named point of a shard's life in the cache.

The crash-matrix tests (``tests/engine/test_crash_matrix.py``) set
``ASTREAMING_CRASH_AT=<point>:<n>``; every process that inherits it (ranks, DataLoader workers, fork or
spawn) kills itself with ``SIGKILL`` the ``n``-th time it passes ``<point>``, counted per process from
its start (a forked child starts again from 0), or, with ``ASTREAMING_CRASH_COUNTER=<file>`` also set,
counted over every process that shares that file (the job's ranks and workers, epoch after epoch: the
``n``-th pass of the whole job, whichever process makes it). Points:

==========================  ===================================================================
``download.part_written``   a download's ``.part`` file is complete but not yet renamed
``publish.before_rename``   a producer's temp file is complete; it holds the publish lock
``publish.after_rename``    the file is published; the publish lock and the ledger row are not yet
``fetch.before_commit``     a shard's files are published; its reservation is not yet its size
``decompress.zip_ready``    the compressed file is in the cache; the raw file not yet
``decompress.writing``      decompression has written part of the raw temp file (each chunk)
``verify.hashing``          ``validate_hash`` is reading a downloaded file (each chunk hashed)
``verify.matched``          its digest matched the index; the file is not yet published
``ledger.before_commit``    a ledger transaction has written its rows, under the ledger's flock
``ledger.forget``           a resident row is deleted (eviction: before its files are unlinked)
``pin``                     a reader pinned the shard it is about to read
==========================  ===================================================================

Unset (always, outside those tests), :func:`crash_point` returns after one comparison: the variable is
read once, at import (or by :func:`arm_from_environment`, for a process forked from a server that
imported astreaming before the variable was set).
"""

from __future__ import annotations

import itertools
import os
import signal
import threading

__all__ = ["POINTS", "arm_from_environment", "crash_point"]

#: Every point the library passes.
POINTS = (
    "download.part_written",
    "publish.before_rename",
    "publish.after_rename",
    "fetch.before_commit",
    "decompress.zip_ready",
    "ledger.before_commit",
    "ledger.forget",
    "pin",
    "decompress.writing",
    "verify.hashing",
    "verify.matched",
)

_target: str | None = None
_at = 0
_passes = itertools.count(1)  # next() on it is atomic: the loop and ledger threads both pass points
_counter: str | None = None  # ASTREAMING_CRASH_COUNTER: passes counted in a file shared by processes
_counter_fd: int | None = None
_counter_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is the armed point and this is its armed pass."""
    if _target is not None and name == _target and _next_pass() == _at:
        os.kill(os.getpid(), signal.SIGKILL)


def _next_pass() -> int:
    if _counter_fd is None:
        return next(_passes)
    with _counter_lock:  # the write and the offset after it, together (threads share the descriptor)
        # O_APPEND: the kernel appends each byte at the end of the file atomically, whichever process
        # writes it; the offset of this process's own descriptor then numbers its pass.
        os.write(_counter_fd, b".")
        return os.lseek(_counter_fd, 0, os.SEEK_CUR)


def arm_from_environment() -> None:
    """(Re)read ``ASTREAMING_CRASH_AT`` and ``ASTREAMING_CRASH_COUNTER``; start counting passes from 0
    (or from what the counter file holds).

    Raises:
        ValueError: the variable is set but is not ``<point>:<n>`` with a known point and ``n >= 1``.
    """
    global _target, _at, _passes, _counter
    spec = os.environ.get("ASTREAMING_CRASH_AT")
    _counter = os.environ.get("ASTREAMING_CRASH_COUNTER") or None
    if not spec:
        _target = None
        _open_counter(None)
        return
    point, _, count = spec.rpartition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"ASTREAMING_CRASH_AT={spec!r}: expected <point>:<n>, n >= 1, point in {POINTS}")
    _target, _at, _passes = point, int(count), itertools.count(1)
    _open_counter(_counter)


def _open_counter(path: str | None) -> None:
    global _counter_fd
    if _counter_fd is not None:
        os.close(_counter_fd)
    _counter_fd = None if path is None else os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _reset_after_fork() -> None:
    global _passes, _counter_lock
    _passes = itertools.count(1)  # a forked child counts its own passes
    _counter_lock = threading.Lock()  # another thread may have held it at the fork
    if _counter_fd is not None:
        _open_counter(_counter)  # a descriptor of its own: the parent's offset is not this one's count


arm_from_environment()
os.register_at_fork(after_in_child=_reset_after_fork)
