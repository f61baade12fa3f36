"""The live resources of a dataset in one process and one event loop: backends, fetcher, scheduler.

Nothing here exists until first needed in the process that uses it (fork-safe: a dataset pickles into
DataLoader workers without live resources). A :class:`Runtime` belongs to one event loop: the caller's
for ``async for``, the process's loop thread for sync iteration and random access.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.util
import os
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from astreaming.cache.announce import NeedsAnnouncer
from astreaming.cache.nextuse import LATER, LaterUse, NextUse
from astreaming.engine.fetcher import ShardFetcher
from astreaming.engine.shards import ShardTable
from astreaming.fetch.loop_thread import LoopThread, get_loop_thread
from astreaming.fetch.readiness import Readiness
from astreaming.fetch.scheduler import FetchScheduler
from astreaming.fetch.waiter import ShardWaiter
from astreaming.fetch.workerexit import guard_worker_exit, in_dataloader_worker
from astreaming.storage.base import Backend
from astreaming.storage.linkgauge import LinkGauge
from astreaming.storage.retry import RetryPolicy, RetryStats

if TYPE_CHECKING:
    from astreaming.cache.budget import NodeBudget
    from astreaming.cache.pins import Pins

__all__ = ["Runtime", "SyncRuntime", "retry_policy"]

_log = logging.getLogger(__name__)

#: Plan positions ahead within which a look-ahead download displaces nobody's need (at least; 4 x
#: predownload if more): shards being read leave the cache before it is needed.
_NEEDS_HORIZON = 1024
#: At most this many shards announced per process: with 8 ranks x 8 workers, at most 16k rows in the
#: ledger, rewritten only when a process's list changes (a position alone is one row).
_NEEDS_MAX = 256
#: At most this many positions of the next epoch are looked at (see ``Runtime.later``).
_LATER_MAX = 1 << 16
#: Seconds between announcements (only when the consumer moved).
_PUBLISH_EVERY = 0.2
#: Warn about thrashing once a plan's refetches exceed this share of its distinct shards (and _MIN).
_THRASH_SHARE = 0.1
_THRASH_MIN = 4


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
        stretch: bool = False,
        cache_limit: int | None = None,
        readers: int = 1,
        hint_slot: str | None = None,
    ) -> None:
        self.table = table
        #: Whether the look-ahead may stretch by a shard while the link has room (it was not chosen).
        self.stretch = stretch
        self.max_in_flight = max_in_flight
        self.predownload = predownload
        self.retry_stats = RetryStats()
        self._open: _Open | None = None
        self.next_use = NextUse(np.empty(0, dtype=np.int64))
        self._published: float = -1.0
        self._publisher: asyncio.Task[None] | None = None
        self._plan_shards = 0
        self._refetches_before = 0
        self._thrash_warned = False
        #: Which shards are ready in this process: the scheduler marks them, the budget's evictions and
        #: the consumers that find a shard gone forget them (see :mod:`astreaming.fetch.readiness`).
        self.readiness = Readiness()
        self.budget: NodeBudget | None = None
        self.pins: Pins | None = None
        # Only shards of streams with a remote can be fetched again, so only they may be evicted.
        self.evictable: list[bool] = [
            table.stream_of(shard).stream.has_remote for shard in range(table.num_shards)
        ]
        #: The same per shard as an array (a walk masks a chunk's shards with it).
        self.remote_shards = np.asarray(self.evictable, dtype=bool)
        #: Shards of a remote that a walk found in the cache and marked ready itself, never asked of
        #: the scheduler (counted in ``cache_hits`` with those the fetches found present).
        self.found_present = 0
        #: Plan positions ahead for which this process publishes its needs (and protects shards).
        self.needs_horizon = max(4 * int(predownload or 0), _NEEDS_HORIZON)
        #: The next epoch's first needs (kept over shards nobody needs; see :class:`LaterUse`).
        self.later: LaterUse | None = None
        #: Positions of the next epoch whose shards are looked up: about what the budget holds.
        self.later_positions = self.needs_horizon
        #: Plan positions ahead that eviction sees and whose shards this process announces to the node
        #: (at most ``_NEEDS_MAX`` of them): twice what the budget holds, so that a process behind
        #: another by more than the cache holds still names the shards the leader would evict next
        #: (the leader then waits for it: ``couple_for``), not only those of its next batch or two.
        self.needs_window = self.needs_horizon
        # The current plan's epoch and length (positions): this process's progress, for the node.
        self.extent: tuple[int, int] | None = None
        # The current plan ran to its end: its hint about the next one is what a successor will read.
        self.plan_ended = False
        if cache_limit is not None:
            # Imported only under a cache_limit: the node ledger's modules and sqlite3 (~1 MB resident).
            from astreaming.cache.budget import NodeBudget
            from astreaming.cache.pins import Pins
            from astreaming.engine.ledgerkeys import ledger_layout

            layout = ledger_layout(table, cache_limit, readers=readers)
            self.budget = NodeBudget(
                cache_limit,
                layout.ledger,
                layout.keys,
                fixed=layout.fixed,
                indexes=layout.indexes,
                lookahead_headroom=layout.headroom,
                footprints=[table.max_bytes(shard) for shard in range(table.num_shards)],
                sooner=lambda distance: [s for s, _ in self.next_use.upcoming(int(distance), _NEEDS_MAX)],
                protect_within=self.needs_horizon,
                # A waiting consumer leaves a shard to another reader needing it within 2 batches (a
                # quarter of the default predownload): about how far a DataLoader worker runs ahead.
                yield_within=self.needs_horizon if predownload is None else max(1.0, predownload / 4),
                next_use=lambda shard: self.next_use(shard),
                position=lambda: float(self.next_use.global_position),
                on_evict=self.readiness.forget,  # on the budget's thread: Readiness is thread-safe
                progress=self.progress,
                hint_slot=hint_slot,
            )
            self.pins = Pins(layout.targets)
            # Twice the positions of the shards the limit holds: enough to rank every shard it can keep.
            raw = sum(table.raw_bytes(s) for s in range(table.num_shards))
            fits = cache_limit / raw * int(table.bounds[-1]) if raw else 0.0
            self.later_positions = int(min(_LATER_MAX, max(self.needs_horizon, 2 * fits)))
            self.needs_window = self.later_positions
        self.announcer = NeedsAnnouncer(self.needs_window, _NEEDS_MAX)

    def progress(self) -> float | None:
        """Epochs done plus the share of the current plan consumed (None: no plan, or its length unknown)."""
        if self.extent is None or self.extent[1] <= 0:
            return None
        epoch, length = self.extent
        return epoch + min(1.0, float(self.next_use.global_position) / length)

    def hints(self) -> list[tuple[int, float]]:
        """What a successor in this process's slot needs first: the next plan's first shards, each at
        ``LATER`` plus its position there (only once the current plan ran to its end)."""
        if not self.plan_ended or self.later is None:
            return []
        pairs = zip(self.later.shards, self.later.positions, strict=True)
        return [(shard, LATER + at) for shard, at in itertools.islice(pairs, _NEEDS_MAX)]

    async def open(self) -> None:
        """Create the backends and the scheduler on the running loop."""
        backends: dict[int, Backend] = {}
        policies: dict[int, RetryPolicy] = {}
        try:
            for stream_id, shards in enumerate(self.table.streams):
                options = shards.options
                policies[stream_id] = retry_policy(options.download_retry, options.download_timeout)
                if shards.stream.remote_root is not None:
                    backend = shards.stream.open_backend(options.download_timeout)
                    await backend.__aenter__()
                    backends[stream_id] = backend
        except BaseException:
            for backend in backends.values():
                await backend.aclose()
            raise
        if self.budget is not None:
            try:
                await self.budget.run(self.budget.open)
            except BaseException:
                for backend in backends.values():
                    await backend.aclose()
                raise
        # One gauge of the link for the whole download path: whole downloads and parts hold connections,
        # and the scheduler starts look-ahead while they leave the link room.
        gauge = LinkGauge()
        scheduler = FetchScheduler(
            self._fetch,
            max_in_flight=self.max_in_flight,
            predownload=self.predownload,
            head_first=True,
            spare=gauge.spare,
            stretch=self.stretch,
            readiness=self.readiness,
        )
        gauge.on_end(scheduler.pump)
        fetcher = ShardFetcher(
            self.table,
            backends,
            policies,
            self.retry_stats,
            budget=self.budget,
            distance=scheduler.distance,
            gauge=gauge,
        )
        self._open = _Open(backends, fetcher, scheduler)

    async def _fetch(self, shard: int) -> int:
        downloaded = await self.fetcher.fetch(shard)
        if self.budget is not None and not self._thrash_warned:
            self._warn_if_thrashing(self.budget.limit)
        return downloaded

    def _warn_if_thrashing(self, limit: int) -> None:
        """Say once per plan when ``cache_limit`` makes this process download the same shards again.

        Nothing fails: every sample is still right, only the bytes grow. Users see it in the log (and in
        ``stats()['refetches']``) instead of discovering it in their storage bill.
        """
        refetches = self.fetcher.counters.refetches - self._refetches_before
        if refetches <= max(_THRASH_MIN, _THRASH_SHARE * self._plan_shards):
            return
        self._thrash_warned = True
        _log.warning(
            "cache_limit=%d bytes is too small for this sample order: this process has downloaded %d "
            "shards again in this epoch after they were evicted (its epoch reads %d distinct shards). "
            "Every sample is still correct, but shards are fetched several times: raise cache_limit, or "
            "make the order read from fewer shards at once (a smaller shuffle_block_size).",
            limit,
            refetches,
            self._plan_shards,
        )

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
        extent: tuple[int, int] | None = None,
    ) -> None:
        """Start a plan: want every shard at the position it is first needed (on the loop).

        Args:
            plan_shards: The shard of every plan position (drives "furthest next use" eviction).
            shards: The plan's distinct shards in first-need order.
            first_need: The position first needing each of ``shards``.
            extent: The plan's epoch and number of positions, if known (this process's progress).
        """
        self.next_use = NextUse(plan_shards)
        self.extent = extent
        self.plan_ended = False
        self.later = None  # the hint of the plan that ended was about this one
        self._published = -1.0
        self.announcer.reset()
        self.scheduler.rewind(0)  # positions restart with each plan (e.g. the next epoch)
        self.fetcher.new_plan()
        self._plan_shards, self._thrash_warned = len(shards), False
        self._refetches_before = self.fetcher.counters.refetches
        self.scheduler.want_many(shards.tolist(), first_need.tolist())
        if self.budget is not None and self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_needs())

    def expect_next(self, shards: npt.NDArray[np.int64]) -> None:
        """The next plan starts with these shards (one per position): keep them over unneeded ones."""
        self.later = LaterUse(shards)
        self.next_use.later = self.later
        self._published = -1.0  # announce them
        self.announcer.reset()

    def end_plan(self) -> None:
        """The current plan ran to its end (its next-plan hint may be left for a successor)."""
        self.plan_ended = True

    def window(self, next_use: NextUse) -> None:
        """Eviction now looks at ``next_use`` (the walk's window of the current plan)."""
        next_use.later = self.later
        self.next_use = next_use

    async def _publish_needs(self) -> None:
        """Tell the node, a few times a second, which shards this process needs soon (for eviction)."""
        assert self.budget is not None
        while True:
            next_use = self.next_use
            position = float(next_use.global_position)
            if position != self._published:
                self._published = position
                extent = self.extent
                needs, changed = self.announcer.needs(next_use, None if extent is None else extent[1])
                try:
                    await self.budget.run(self.budget.publish, position, needs if changed else None)
                except Exception as exc:
                    self.announcer.reset()  # announce the whole list again next time
                    _log.debug("could not publish upcoming shards to the cache ledger: %s", exc)
            await asyncio.sleep(_PUBLISH_EVERY)

    async def aclose(self) -> None:
        """Cancel fetches and close the backends."""
        opened, self._open = self._open, None
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
        if opened is None:
            return
        await opened.scheduler.aclose()
        if self.budget is not None:
            # Not on the budget's own thread: close() joins it after the queued ledger work.
            await asyncio.to_thread(self.budget.close, self.hints())
        if self.pins is not None:
            self.pins.close()
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
        # Registered after the loop thread's own exit hook, so it runs first (atexit is LIFO); and run
        # by the loop thread if it is stopped first any other way.
        atexit.register(self._finalizer)
        self.loop_thread.close_before_stop(self._finalizer)
        if multiprocessing.parent_process() is not None:
            # A forked multiprocessing child (a DataLoader worker) ends with os._exit: atexit never runs
            # there, multiprocessing's exit finalizers do. Without this its ledger rows (position, needs)
            # and liveness lock file outlive it until another process sweeps them.
            multiprocessing.util.Finalize(None, self._finalizer, exitpriority=0)
            if in_dataloader_worker():
                # A worker of a plain torch DataLoader (a StreamingDataLoader's worker init did it
                # already): should its main process die, it ends instead of waiting forever at exit for
                # a result pipe nobody drains (see fetch.workerexit). Runs after the close above (-1 < 0).
                guard_worker_exit()

    def enqueue(
        self,
        plan_shards: npt.NDArray[np.int64],
        shards: npt.NDArray[np.int64],
        first_need: npt.NDArray[np.int64],
        extent: tuple[int, int] | None = None,
    ) -> None:
        """Want the plan's shards (blocks only for the hand-over to the loop)."""

        async def run() -> None:
            self.runtime.enqueue(plan_shards, shards, first_need, extent)

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
