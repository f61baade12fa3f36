"""The fetch scheduler: shards downloaded in the order the plan first needs them, N at a time.

State changes (queue, start, finish, cancel) are decided synchronously in plain methods that never await;
the downloads themselves run in tasks outside that bookkeeping (the pattern of httpcore's connection pool).
Everything runs on one event loop; other threads talk to it through
:class:`~astreaming.fetch.waiter.ShardWaiter`.

Readiness of a shard is an :class:`asyncio.Future` shared by everyone who wants it. A fetch that fails sets
its exception on that future, so the consumer raises it - an epoch never ends silently, nobody hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

from astreaming.errors import ConfigError
from astreaming.fetch.readiness import Readiness

__all__ = ["URGENT", "FetchDeferred", "FetchScheduler", "FetchStatistics"]

#: Shards ``stretch`` may start beyond the look-ahead window at once. Three: a link of ten capped
#: connections takes about three shards' parts at once where a slow server gets large parts (4 per
#: shard), and a consumer slower than the link holds at most this many shards more than the look-ahead.
STRETCH_SHARDS = 3

#: Priority of a random-access request: ahead of every plan position, and exempt from the look-ahead.
URGENT = -math.inf


class FetchDeferred(Exception):
    """Raised by a fetch that should not run yet (e.g. no room in the cache without evicting shards
    needed sooner). The shard goes back to the queue, and look-ahead fetches pause until the consumer
    moves on or ``defer_retry`` seconds pass."""


class _State(Enum):
    QUEUED = "queued"
    RUNNING = "running"


@dataclass
class _Entry:
    state: _State
    priority: float
    future: asyncio.Future[None] | None  # created only once somebody asks for it (want_many is lazy)
    task: asyncio.Task[int | None] | None = None


@dataclass(frozen=True)
class FetchStatistics:
    """Counters of a :class:`FetchScheduler` (anyio-style ``statistics()``).

    Attributes:
        shards_done: Fetches that completed successfully.
        bytes_done: Bytes the fetches reported having transferred.
        in_flight: Fetches running now.
        queued: Shards wanted but not started (waiting for a slot or for the look-ahead).
        failures: Fetches that raised.
        cancelled: Shards cancelled before their fetch finished.
        hits: Requests for a shard that was already ready.
        consumer_waits: Times a consumer asked to wait for a shard (ready or not).
        consumer_wait_seconds: Total time consumers spent blocked on shard readiness.
    """

    shards_done: int
    bytes_done: int
    in_flight: int
    queued: int
    failures: int
    cancelled: int
    hits: int
    consumer_waits: int
    consumer_wait_seconds: float


class FetchScheduler:
    """Run ``fetch(shard)`` for wanted shards in priority order, at most ``max_in_flight`` at once.

    Args:
        fetch: Makes one shard ready (download, verify, publish). It may return the number of bytes it
            transferred (counted in statistics) or ``None``. It should retry transient errors itself; any
            exception it raises is the shard's final outcome.
        max_in_flight: Downloads running concurrently for the plan.
        predownload: Look-ahead in plan positions: a shard starts only once its priority (first-need
            position) is ``<= position + predownload``, where ``position`` is what :meth:`advance`
            last reported. ``None`` means unbounded.
        urgent_slots: Extra slots only random-access requests (``priority=-inf``) may use, so that
            ``ds[i]`` does not wait behind a full window of look-ahead downloads.
        head_first: While a shard the consumer needs now (priority <= position) is downloading, start
            no look-ahead fetch: on a bandwidth-bound link the needed shard gets the whole link, so the
            first sample costs one shard transfer instead of a window's.
        spare: Whether the running downloads leave the link room for another (e.g.
            :meth:`LinkGauge.spare`). When it says so, ``head_first`` no longer holds look-ahead back
            (the needed shard already has the connections it can use), and with ``stretch`` one shard
            beyond the look-ahead may start. Call :meth:`pump` when its answer may have changed.
        stretch: Let shards beyond ``predownload`` start while :attr:`spare` says the link has room, at
            most :data:`STRETCH_SHARDS` at once
            (for a look-ahead nobody chose: shards larger than the window would otherwise leave the
            link idle between them).
        clock: Seconds for the consumer-wait statistics (``time.perf_counter``; tests inject a fake).
        readiness: Where ready shards are recorded and looked up (shared with the consumers and the
            cache budget of the same runtime); a new one if not given.

    Use as ``async with FetchScheduler(...) as sched:``; leaving the block cancels everything still running.
    All methods except :meth:`aclose` and :meth:`wait` are synchronous and must run on the scheduler's loop.
    """

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[int | None]],
        *,
        max_in_flight: int = 8,
        predownload: float | None = None,
        urgent_slots: int = 1,
        head_first: bool = False,
        defer_retry: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
        spare: Callable[[], bool] | None = None,
        stretch: bool = False,
        readiness: Readiness | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if urgent_slots < 0:
            raise ConfigError(f"urgent_slots must be >= 0, got {urgent_slots}")
        if predownload is not None and predownload < 0:
            raise ConfigError(f"predownload must be >= 0, got {predownload}")
        self._fetch = fetch
        self.defer_retry = defer_retry
        # Set when a look-ahead fetch was deferred: no look-ahead starts until the position advances or
        # a short timer fires (a nearer shard that did not fit means farther ones fit even less).
        self._lookahead_paused = False
        self._pause_timer: asyncio.TimerHandle | None = None
        self._clock = clock  # measures consumer waits; tests inject a fake one
        self.max_in_flight = max_in_flight
        self.urgent_slots = urgent_slots
        self.head_first = head_first
        self.spare = spare
        self.stretch = stretch and spare is not None
        # Shards started beyond the look-ahead by `stretch` (priority), until the window reaches them.
        self._beyond: dict[int, float] = {}
        self.predownload = math.inf if predownload is None else float(predownload)
        self._position: float = 0
        self._entries: dict[int, _Entry] = {}  # wanted and not ready: queued or running
        #: The one record of which shards are ready (the scheduler marks them; anyone may forget them).
        self.readiness = readiness if readiness is not None else Readiness()
        self._failed: dict[int, BaseException] = {}  # failed before anyone held a future for them
        self._done_future: asyncio.Future[None] | None = None
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._running = 0
        # Priority of each running fetch: those at or before the consumer's position are what it waits on.
        self._running_priority: dict[int, float] = {}
        self._tasks: set[asyncio.Task[int | None]] = set()
        self._closed = False
        # Counters; consumer waits may be reported from another thread, hence the lock.
        self._stats_lock = threading.Lock()
        self._done = 0
        self._bytes = 0
        self._failures = 0
        self._cancelled = 0
        self._hits = 0
        self._waits = 0
        self._wait_seconds = 0.0

    # -- public API ------------------------------------------------------------------------------------
    def want(self, shard: int, priority: float) -> asyncio.Future[None]:
        """Ask for ``shard``; returns the future that resolves when it is ready (or holds its error).

        Asking again with a smaller priority moves it up the queue; ``priority=-math.inf`` is a random
        access that jumps the queue and ignores the look-ahead. Do not cancel the returned future to
        give up on a shard (others may share it); call :meth:`cancel`.
        """
        if self._closed:
            raise RuntimeError("FetchScheduler is closed")
        if self.readiness.is_ready(shard):
            with self._stats_lock:
                self._hits += 1
            return self._ready_future()
        failed = self._failed.pop(shard, None)
        if failed is not None:
            # A look-ahead fetch failed before anyone asked: hand its error over once (a later want()
            # tries again), rather than silently downloading a second time.
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(failed)
            future.add_done_callback(_consume_exception)
            return future
        entry = self._add(shard, priority)
        self._pump()
        return self._future_of(shard, entry)

    def want_many(self, shards: Iterable[int], priorities: Iterable[float]) -> None:
        """:meth:`want` every shard of a plan at once, without creating futures (cheap for 100k shards).

        Use :meth:`want` or :meth:`wait` later to get a shard's future.
        """
        if self._closed:
            raise RuntimeError("FetchScheduler is closed")
        ready = self.readiness.is_ready
        for shard, priority in zip(shards, priorities, strict=True):
            if not ready(shard):
                self._add(shard, priority)
        self._pump()

    def _add(self, shard: int, priority: float) -> _Entry:
        entry = self._entries.get(shard)
        if entry is None:
            entry = _Entry(_State.QUEUED, priority, None)
            self._entries[shard] = entry
            heapq.heappush(self._heap, (priority, next(self._seq), shard))
        elif entry.state is _State.QUEUED and priority < entry.priority:
            # The old heap item becomes stale; _pump skips items whose priority no longer matches.
            entry.priority = priority
            heapq.heappush(self._heap, (priority, next(self._seq), shard))
        elif entry.state is _State.RUNNING and priority < entry.priority:
            # Needed sooner while it runs: a fetch that is deferred (no room yet) comes back with this
            # priority - as the shard the consumer waits for, which is never deferred again.
            entry.priority = priority
            self._running_priority[shard] = priority
        return entry

    def _future_of(self, shard: int, entry: _Entry) -> asyncio.Future[None]:
        if entry.future is None:
            entry.future = asyncio.get_running_loop().create_future()
            entry.future.add_done_callback(functools.partial(self._on_future_done, shard, entry))
        return entry.future

    async def wait(self, shard: int, priority: float) -> None:
        """Await readiness of ``shard`` from a task on this loop, counting the time as consumer wait."""
        future = self.want(shard, priority)
        if future.done():
            self.note_wait(0.0)
            future.result()
            return
        start = self._clock()
        try:
            # Shielded: a cancelled consumer must not cancel a future other waiters share.
            await asyncio.shield(future)
        finally:
            self.note_wait(self._clock() - start)

    def advance(self, position: float) -> None:
        """The consumer reached plan ``position``: shards within ``predownload`` of it may start.

        Positions only move forward (a smaller one is ignored); a new plan starts with :meth:`rewind`.
        """
        if position > self._position:
            self._position = position
            self._lookahead_paused = False
            self._pump()

    def rewind(self, position: float = 0) -> None:
        """Start a new plan: set the consumer position, even backwards (e.g. the next epoch)."""
        self._position = position
        self._beyond.clear()
        self._pump()

    def distance(self, shard: int) -> float:
        """Plan positions until the consumer needs ``shard`` (0 for what it needs now or random access)."""
        entry = self._entries.get(shard)
        if entry is None or entry.priority == URGENT:
            return 0.0
        return max(0.0, entry.priority - self._position)

    def is_wanted(self, shard: int) -> bool:
        """Whether ``shard`` is queued or being fetched (any thread: one dict lookup)."""
        return shard in self._entries

    def is_ready(self, shard: int) -> bool:
        """Whether ``shard`` was fetched and not forgotten since (asks :attr:`readiness`; any thread)."""
        return self.readiness.is_ready(shard)

    def cancel(self, shard: int) -> None:
        """Stop wanting ``shard``: dequeue it or cancel its running fetch. Its future is cancelled."""
        self._failed.pop(shard, None)
        self._beyond.pop(shard, None)
        entry = self._entries.get(shard)
        if entry is None:
            return
        del self._entries[shard]
        self._cancelled += 1
        if entry.task is not None:
            # The slot is freed in _on_task_done once the task has really unwound.
            entry.task.cancel()
        if entry.future is not None:
            entry.future.cancel()

    def cancel_many(self, shards: Iterable[int]) -> None:
        """:meth:`cancel` each of ``shards`` (e.g. the rest of one plan, leaving other requests alone)."""
        for shard in shards:
            self.cancel(shard)

    def cancel_all(self) -> None:
        """Cancel every queued and running fetch and rewind to position 0 (an iteration stopped).

        Finished shards stay ready.
        """
        for shard in list(self._entries):
            self.cancel(shard)
        self._heap.clear()
        self._failed.clear()
        self._beyond.clear()
        self._position = 0

    def note_wait(self, seconds: float, *, hit: bool = False) -> None:
        """Record time a consumer spent waiting for data (thread-safe); ``hit``: the shard was ready."""
        with self._stats_lock:
            self._waits += 1
            self._wait_seconds += seconds
            self._hits += hit

    def statistics(self) -> FetchStatistics:
        """A snapshot of the counters (callable from any thread)."""
        # A copy first, taken in one C call (atomic under the GIL): the consumer thread asks for these
        # as its walk ends, just when the loop thread cancels the plan's entries, and iterating the dict
        # itself then raised "dictionary changed size during iteration".
        entries = list(self._entries.values())
        queued = sum(1 for e in entries if e.state is _State.QUEUED)
        with self._stats_lock:
            waits, wait_seconds, hits = self._waits, self._wait_seconds, self._hits
        return FetchStatistics(
            shards_done=self._done,
            bytes_done=self._bytes,
            in_flight=self._running,
            queued=queued,
            failures=self._failures,
            cancelled=self._cancelled,
            hits=hits,
            consumer_waits=waits,
            consumer_wait_seconds=wait_seconds,
        )

    async def aclose(self) -> None:
        """Cancel everything still queued or running and wait until the running fetches have unwound."""
        self._closed = True
        if self._pause_timer is not None:
            self._pause_timer.cancel()
        # Includes tasks cancel() already cancelled but that have not finished unwinding.
        tasks = list(self._tasks)
        self.cancel_all()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> FetchScheduler:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- state machine ---------------------------------------------------------------------------------
    def _ready_future(self) -> asyncio.Future[None]:
        # One completed future answers every request for a ready shard (cancel() on it is a no-op).
        if self._done_future is None:
            self._done_future = asyncio.get_running_loop().create_future()
            self._done_future.set_result(None)
        return self._done_future

    def _pump(self) -> None:
        """Start queued fetches while a slot is free and the best one is within the look-ahead."""
        limit = self._position + self.predownload
        while self._heap:
            priority, _, shard = self._heap[0]
            entry = self._entries.get(shard)
            if entry is None or entry.state is not _State.QUEUED or entry.priority != priority:
                heapq.heappop(self._heap)  # stale: cancelled, started, or re-prioritised
                continue
            beyond = priority > limit
            if beyond and not self._may_stretch(limit):
                break
            if self._lookahead_paused and priority > self._position:
                break
            if (
                self.head_first
                and priority > self._position
                and self._consumer_blocked()
                and not (self.spare is not None and self.spare())
            ):
                # Head-of-line first: while a shard the consumer needs now is downloading and keeps the
                # link busy, start no look-ahead fetch that would share the link with it. The first
                # sample then costs one shard transfer, not the whole window's.
                break
            # The heap's top is the most urgent request, so if it may not start, nothing may.
            slots = self.max_in_flight + (self.urgent_slots if priority == URGENT else 0)
            if self._running >= slots:
                break
            heapq.heappop(self._heap)
            if beyond:
                self._beyond[shard] = priority
            entry.state = _State.RUNNING
            self._running += 1
            self._running_priority[shard] = priority
            task = asyncio.get_running_loop().create_task(self._run(shard), name=f"fetch shard {shard}")
            entry.task = task
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._on_task_done, shard, entry))

    def _may_stretch(self, limit: float) -> bool:
        """Whether one shard beyond the look-ahead may start now (``stretch``, and the link has room)."""
        if not self.stretch:
            return False
        for shard, priority in list(self._beyond.items()):
            if priority <= limit:
                del self._beyond[shard]  # the window reached it: it no longer counts as beyond
        # At most STRETCH_SHARDS beyond the window at once: a consumer slower than the link keeps at most
        # that many shards more than the look-ahead, and a busy consumer that lags a little behind a
        # download-bound link does not leave the link idle.
        return len(self._beyond) < STRETCH_SHARDS and self.spare is not None and self.spare()

    def pump(self) -> None:
        """Start what may start now (e.g. after :attr:`spare`'s answer changed)."""
        if not self._closed:
            self._pump()

    def _consumer_blocked(self) -> bool:
        position = self._position
        return any(p <= position for p in self._running_priority.values())

    async def _run(self, shard: int) -> int | None:
        return await self._fetch(shard)

    def _on_future_done(self, shard: int, entry: _Entry, future: asyncio.Future[None]) -> None:
        # Someone cancelled the shared future directly (e.g. a task awaiting it unshielded was cancelled):
        # treat it as cancel() so the fetch does not keep a slot for nobody.
        if future.cancelled() and self._entries.get(shard) is entry:
            self.cancel(shard)

    def _on_task_done(self, shard: int, entry: _Entry, task: asyncio.Task[int | None]) -> None:
        self._running -= 1
        self._running_priority.pop(shard, None)
        self._tasks.discard(task)
        current = self._entries.get(shard) is entry
        if task.cancelled():
            if current:
                # Cancelled from outside (not via cancel()): treat as a cancel so waiters do not hang.
                del self._entries[shard]
                self._cancelled += 1
            if entry.future is not None and not entry.future.done():
                entry.future.cancel()
        else:
            exc = task.exception()
            if isinstance(exc, FetchDeferred):
                if current:
                    # Not a failure: queue it again and hold further look-ahead back for a while.
                    entry.state = _State.QUEUED
                    entry.task = None
                    heapq.heappush(self._heap, (entry.priority, next(self._seq), shard))
                    self._pause_lookahead()
            elif exc is not None:
                self._failures += 1
                if current:
                    # Forget the failure so a later want() tries again; current waiters get the error.
                    del self._entries[shard]
                if entry.future is None:
                    if current:
                        self._failed[shard] = exc
                elif not entry.future.done():
                    entry.future.set_exception(exc)
                    # Mark retrieved-or-not silently: the consumer may have stopped caring.
                    entry.future.add_done_callback(_consume_exception)
            else:
                self._done += 1
                self._bytes += task.result() or 0
                if current:
                    # Ready shards keep no entry or future: a set entry per shard, not ~300 bytes.
                    # Ready first: another thread never sees a fetched shard neither ready nor wanted.
                    self.readiness.mark_ready(shard)
                    del self._entries[shard]
                if entry.future is not None and not entry.future.done():
                    entry.future.set_result(None)
        if not self._closed:
            self._pump()

    def _pause_lookahead(self) -> None:
        self._lookahead_paused = True
        if self._pause_timer is None and not self._closed:
            self._pause_timer = asyncio.get_running_loop().call_later(
                self.defer_retry, self._resume_lookahead
            )

    def _resume_lookahead(self) -> None:
        self._pause_timer = None
        self._lookahead_paused = False
        if not self._closed:
            self._pump()


def _consume_exception(future: asyncio.Future[None]) -> None:
    # Avoid "Future exception was never retrieved" when nobody waits on a failed look-ahead shard.
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
