"""The live resources of a dataset in one process and one event loop: backends, fetcher, scheduler.

Nothing here exists until first needed in the process that uses it (fork-safe: a dataset pickles into
DataLoader workers without live resources). A :class:`Runtime` belongs to one event loop: the caller's
for ``async for``, the process's loop thread for sync iteration and random access.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from astreaming.cache.budget import CacheBudget
from astreaming.cache.nextuse import NextUse
from astreaming.engine.fetcher import ShardFetcher
from astreaming.engine.shards import ShardTable
from astreaming.fetch.loop_thread import LoopThread, get_loop_thread
from astreaming.fetch.scheduler import FetchScheduler
from astreaming.fetch.waiter import ShardWaiter
from astreaming.storage.base import Backend
from astreaming.storage.registry import backend_for
from astreaming.storage.retry import RetryPolicy, RetryStats

__all__ = ["Runtime", "SyncRuntime", "retry_policy"]


def retry_policy(download_retry: int, download_timeout: float) -> RetryPolicy:
    """The retry policy of one stream (``download_retry`` retries after the first attempt)."""
    return RetryPolicy.from_download_retry(download_retry, download_timeout)


@dataclass
class _Open:
    backends: dict[int, Backend]
    fetcher: ShardFetcher
    scheduler: FetchScheduler


class Runtime:
    """Backends, fetcher and scheduler of one dataset on one event loop (an async resource)."""

    def __init__(
        self,
        table: ShardTable,
        *,
        max_in_flight: int,
        predownload: int | None,
        cache_limit: int | None = None,
    ) -> None:
        self.table = table
        self.max_in_flight = max_in_flight
        self.predownload = predownload
        self.retry_stats = RetryStats()
        self._open: _Open | None = None
        self.next_use = NextUse(np.empty(0, dtype=np.int64))
        # Shards evicted by the loop thread; the consumer drops their readers at its next shard switch.
        self.evicted: collections.deque[int] = collections.deque()
        self.budget: CacheBudget[int] | None = None
        # Only shards of streams with a remote can be fetched again, so only they may be evicted.
        self.evictable: list[bool] = [
            table.stream_of(shard).stream.has_remote for shard in range(table.num_shards)
        ]
        if cache_limit is not None:
            self.budget = CacheBudget(
                cache_limit,
                next_use=lambda shard: self.next_use(shard),
                remove=self._remove_shard,
                on_evict=self._on_evict,
            )
            for shard in range(table.num_shards):
                # Shards already in the cache count against the limit; only re-fetchable ones may go.
                if self.evictable[shard] and table.is_local(shard):
                    self.budget.add(shard, table.local_bytes(shard))

    def _remove_shard(self, shard: int) -> None:
        for file in self.table.files(shard):
            for path in (file.raw_path, file.zip_path):
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    def _on_evict(self, shard: int) -> None:
        if self._open is not None:
            self._open.scheduler.forget(shard)
        self.evicted.append(shard)

    async def open(self) -> None:
        """Create the backends and the scheduler on the running loop."""
        backends: dict[int, Backend] = {}
        policies: dict[int, RetryPolicy] = {}
        try:
            for stream_id, shards in enumerate(self.table.streams):
                options = shards.options
                policies[stream_id] = retry_policy(options.download_retry, options.download_timeout)
                root = shards.stream.remote_root
                if root is not None:
                    backend = backend_for(root, timeout=options.download_timeout)
                    await backend.__aenter__()
                    backends[stream_id] = backend
        except BaseException:
            for backend in backends.values():
                await backend.aclose()
            raise
        fetcher = ShardFetcher(self.table, backends, policies, self.retry_stats, budget=self.budget)
        scheduler = FetchScheduler(
            fetcher.fetch, max_in_flight=self.max_in_flight, predownload=self.predownload, head_first=True
        )
        self._open = _Open(backends, fetcher, scheduler)

    def backend(self, stream_id: int) -> tuple[Backend, RetryPolicy]:
        """The open backend and retry policy of a stream with a remote (after :meth:`open`)."""
        assert self._open is not None, "Runtime.open() was not awaited"
        return self._open.backends[stream_id], self._open.fetcher.policies[stream_id]

    @property
    def scheduler(self) -> FetchScheduler:
        """The fetch scheduler (after :meth:`open`)."""
        assert self._open is not None, "Runtime.open() was not awaited"
        return self._open.scheduler

    @property
    def fetcher(self) -> ShardFetcher:
        """The shard fetcher (after :meth:`open`)."""
        assert self._open is not None, "Runtime.open() was not awaited"
        return self._open.fetcher

    def enqueue(
        self,
        plan_shards: npt.NDArray[np.int64],
        shards: npt.NDArray[np.int64],
        first_need: npt.NDArray[np.int64],
    ) -> None:
        """Start a plan: want every shard at the position it is first needed (on the loop).

        Args:
            plan_shards: The shard of every plan position (drives "furthest next use" eviction).
            shards: The plan's distinct shards in first-need order.
            first_need: The position first needing each of ``shards``.
        """
        self.next_use = NextUse(plan_shards)
        self.scheduler.rewind(0)  # positions restart with each plan (e.g. the next epoch)
        self.scheduler.want_many(shards.tolist(), first_need.tolist())

    async def aclose(self) -> None:
        """Cancel fetches and close the backends."""
        opened, self._open = self._open, None
        if opened is None:
            return
        await opened.scheduler.aclose()
        for backend in opened.backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncRuntime:
    """A :class:`Runtime` opened on the process's loop thread, used from sync code (any other thread)."""

    def __init__(self, runtime: Runtime) -> None:
        self.pid = os.getpid()
        self.loop_thread: LoopThread = get_loop_thread()
        self.runtime = runtime
        self.loop_thread.call(self.runtime.open())
        self.waiter = ShardWaiter(self.runtime.scheduler, self.loop_thread)
        # Close the backends (their HTTP sessions) when this object is collected or at exit, on the
        # loop that owns them. The finalizer holds the runtime, never this object.
        self._finalizer = weakref.finalize(self, _close_runtime, self.pid, self.loop_thread, self.runtime)
        # Registered after the loop thread's own exit hook, so it runs first (atexit is LIFO).
        atexit.register(self._finalizer)

    def enqueue(
        self,
        plan_shards: npt.NDArray[np.int64],
        shards: npt.NDArray[np.int64],
        first_need: npt.NDArray[np.int64],
    ) -> None:
        """Want the plan's shards (blocks only for the hand-over to the loop)."""

        async def run() -> None:
            self.runtime.enqueue(plan_shards, shards, first_need)

        self.loop_thread.call(run())

    def close(self) -> None:
        """Close the runtime on its loop (idempotent; a no-op in a forked child)."""
        self._finalizer()


def _close_runtime(pid: int, loop_thread: LoopThread, runtime: Runtime) -> None:
    if os.getpid() != pid or not loop_thread.alive:
        return  # a forked child's copy: the parent's loop and sessions are not ours to touch
    future = asyncio.run_coroutine_threadsafe(runtime.aclose(), loop_thread.loop)
    if not loop_thread.in_loop_thread():
        # Wait (bounded) so that sessions are closed before the interpreter or the loop goes away.
        with contextlib.suppress(Exception):
            future.result(timeout=30)
