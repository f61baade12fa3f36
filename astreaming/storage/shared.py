"""Storage clients shared by every backend of a process on one event loop, reference-counted.

Building an aiobotocore S3 client costs 0.1-0.25 s of CPU (credentials chain, endpoint resolution,
event hooks), and each one keeps its own connection pool. A process that opens several backends for the
same store - a dataset's index load and its shard fetches, two streams on one bucket, two datasets on one
endpoint - gets one client from here instead, as long as one of them holds it:

- a client belongs to the event loop that created it (aiohttp binds its connector to that loop), so the
  pool is per loop: a client is never handed to another loop;
- a client is shared only between users that would have built an identical one: the key names the
  backend kind and every option, endpoint and credential that went into building it;
- each :func:`acquire` returns a :class:`Lease`; releasing the last lease of a client closes it, at once
  and on its loop (no client is left for the garbage collector to report unclosed);
- after ``fork`` the child starts with an empty pool: the parent's clients (their sockets) are never used
  by the child, nor closed by it - they stay referenced, so the child's collector never finalizes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Lease", "acquire", "client_count", "clients_built"]

T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    stack: contextlib.AsyncExitStack
    users: int = 1


@dataclass
class _Pool:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    entries: dict[Hashable, _Entry] = field(default_factory=dict)


# loop -> its pool. Weak keys: a loop that is gone can never be matched again by a new loop that happens
# to reuse its address (which a plain id() key would allow).
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()
# The parent's pools after a fork: kept alive and untouched (see the module docstring).
_inherited: list[tuple[asyncio.AbstractEventLoop, _Pool]] = []
#: Clients built by this process, by key kind (the first item of the key): what tests and benchmarks
#: count to see sharing work.
_built: dict[str, int] = {}


def _pool(loop: asyncio.AbstractEventLoop) -> _Pool:
    with _pools_lock:
        pool = _pools.get(loop)
        if pool is None:
            pool = _pools[loop] = _Pool()
        return pool


class Lease(Generic[T]):
    """One user's hold on a shared client: :attr:`client` until :meth:`release`."""

    def __init__(self, pool: _Pool, key: Hashable, entry: _Entry) -> None:
        self._pool: _Pool | None = pool
        self._key = key
        self._entry = entry
        self.pid = os.getpid()

    @property
    def client(self) -> T:
        """The shared client (valid until released)."""
        if self._pool is None:
            raise RuntimeError("this storage client lease was released")
        value: T = self._entry.value
        return value

    async def release(self) -> None:
        """Give the client back; the last user's release closes it (idempotent; on the client's loop).

        In a forked child a lease copied from the parent is dropped without touching the parent's client.
        """
        pool, self._pool = self._pool, None
        if pool is None or self.pid != os.getpid():
            return
        entry = self._entry
        entry.users -= 1
        if entry.users > 0:
            return
        if pool.entries.get(self._key) is entry:
            del pool.entries[self._key]
        await entry.stack.aclose()


async def acquire(
    key: tuple[str, Hashable], make: Callable[[], contextlib.AbstractAsyncContextManager[T]]
) -> Lease[T]:
    """A lease on the running loop's client for ``key``, building it with ``make()`` if there is none.

    Args:
        key: ``(kind, options)``: the kind names the client type (``"s3"``, ``"aiohttp"``), the options
            everything that went into building it (endpoint, credentials, timeouts, pool size).
        make: Returns an async context manager whose value is the client; its exit closes the client.
    """
    pool = _pool(asyncio.get_running_loop())
    async with pool.lock:  # two users asking at once build one client
        entry = pool.entries.get(key)
        if entry is None:
            stack = contextlib.AsyncExitStack()
            value = await stack.enter_async_context(make())
            entry = pool.entries[key] = _Entry(value, stack, users=0)
            _built[key[0]] = _built.get(key[0], 0) + 1
        entry.users += 1
    return Lease(pool, key, entry)


def client_count(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """Clients open in this process on ``loop`` (default: on every loop; never the parent's)."""
    with _pools_lock:
        pools = list(_pools.values()) if loop is None else [p for p in (_pools.get(loop),) if p is not None]
    return sum(len(pool.entries) for pool in pools)


def clients_built(kind: str) -> int:
    """Clients of ``kind`` this process has built so far (a monotonic counter)."""
    return _built.get(kind, 0)


def _after_fork_in_child() -> None:
    global _pools, _pools_lock, _built
    _inherited.extend(_pools.items())  # strong references: never collected, so never reported unclosed
    _pools = weakref.WeakKeyDictionary()
    _pools_lock = threading.Lock()
    _built = {}


os.register_at_fork(after_in_child=_after_fork_in_child)
