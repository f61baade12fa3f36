"""The sync side: a consumer thread waits for shard readiness, never for individual samples.

:class:`ShardWaiter` forwards requests to a :class:`~astreaming.fetch.scheduler.FetchScheduler` living on
a :class:`~astreaming.fetch.loop_thread.LoopThread` and blocks only on a ``concurrent.futures.Future`` per
shard. The fetch error, if any, is re-raised in the consumer's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.fetch.loop_thread import LoopThread
from astreaming.fetch.scheduler import FetchScheduler
from astreaming.fetch.stopping import WorkersStopping, stop_event

__all__ = ["ShardWaiter", "WaiterStatistics"]

#: How often a worker's shard wait checks whether its DataLoader is shutting it down (seconds).
_STOP_POLL = 0.05


@dataclass(frozen=True)
class WaiterStatistics:
    """What the consumer thread experienced."""

    waits: int
    wait_seconds: float


class ShardWaiter:
    """Blocking access to shard readiness for a consumer thread.

    Args:
        scheduler: The scheduler; it must have been created for ``loop_thread``'s loop.
        loop_thread: The loop the scheduler runs on.
    """

    def __init__(
        self,
        scheduler: FetchScheduler,
        loop_thread: LoopThread,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.scheduler = scheduler
        self.loop_thread = loop_thread
        self._clock = clock  # measures waits; tests inject a fake one
        self._waits = 0
        self._wait_seconds = 0.0

    def want(self, shard: int, priority: float) -> concurrent.futures.Future[None]:
        """Request ``shard`` without blocking; the returned future resolves when it is ready."""
        return self.loop_thread.run(self._ready(shard, priority))

    async def _ready(self, shard: int, priority: float) -> None:
        # Shielded so that cancelling this consumer-side future never cancels the shared shard future.
        await asyncio.shield(self.scheduler.want(shard, priority))

    def want_many(
        self, shards: Iterable[int] | npt.NDArray[np.integer], priorities: Iterable[float] | npt.NDArray[Any]
    ) -> None:
        """Queue a whole plan's shards at their first-need positions (fire and forget; never blocks).

        Later :meth:`wait_ready` calls are handled after this one (the loop runs callbacks in order).
        Numpy arrays are accepted and converted to Python numbers here, once.
        """
        shard_list = shards.tolist() if isinstance(shards, np.ndarray) else list(shards)
        prio_list = priorities.tolist() if isinstance(priorities, np.ndarray) else list(priorities)
        self.loop_thread.call_soon(self.scheduler.want_many, shard_list, prio_list)

    def advance(self, position: float) -> None:
        """Report the consumer's plan position (fire and forget; never blocks)."""
        self.loop_thread.call_soon(self.scheduler.advance, position)

    def rewind(self, position: float = 0) -> None:
        """Start a new plan at ``position`` (fire and forget)."""
        self.loop_thread.call_soon(self.scheduler.rewind, position)

    def cancel_many(self, shards: Iterable[int]) -> None:
        """Cancel the fetches of ``shards`` (fire and forget), e.g. the rest of a plan that stopped.

        A no-op once the loop thread stopped (its fetches died with it): an iterator abandoned until
        interpreter exit is closed after the loop thread, and must close silently.
        """
        if self.loop_thread.alive:
            self.loop_thread.call_soon(self.scheduler.cancel_many, list(shards))

    def cancel_all(self) -> None:
        """Cancel every queued and running fetch (fire and forget), e.g. when iteration stops early."""
        self.loop_thread.call_soon(self.scheduler.cancel_all)

    def wait_ready(self, shard: int, priority: float, timeout: float | None = None) -> None:
        """Block until ``shard`` is ready, raising its fetch error in this thread.

        Args:
            shard: The shard id.
            priority: Its first-need position in the plan (``-math.inf`` for random access).
            timeout: Seconds to wait at most, or ``None``: the fetch itself is bounded by the storage
                layer's timeouts and retries, so it either completes or fails.

        Raises:
            TimeoutError: ``timeout`` elapsed (the download carries on).
            WorkersStopping: this process is a DataLoader worker being shut down (see
                :mod:`astreaming.fetch.stopping`).
            concurrent.futures.CancelledError: The fetch was cancelled (e.g. by :meth:`cancel_all`).
            Exception: The error the shard's fetch failed with.
        """
        if self.scheduler.is_ready(shard):
            # Fast path without a round trip to the loop (~35 us): a dict read is atomic under the GIL, and
            # readiness only ever goes from DONE to absent (forget() after an eviction, which pins guard).
            self._waits += 1
            self.scheduler.note_wait(0.0, hit=True)
            return
        start = self._clock()
        try:
            _wait(self.want(shard, priority), timeout, shard)
        finally:
            elapsed = self._clock() - start
            self._waits += 1
            self._wait_seconds += elapsed
            self.scheduler.note_wait(elapsed)

    def statistics(self) -> WaiterStatistics:
        """Counters of this consumer's waits."""
        return WaiterStatistics(waits=self._waits, wait_seconds=self._wait_seconds)


def _wait(future: concurrent.futures.Future[None], timeout: float | None, shard: int) -> None:
    """``future.result(timeout)``, watching the worker stop event (if installed) every ``_STOP_POLL`` s."""
    event = stop_event()
    if event is None:
        future.result(timeout)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if event.is_set():
            future.cancel()  # only this consumer's future: the shared shard fetch is shielded
            raise WorkersStopping(f"shard {shard}: the DataLoader is shutting this worker down")
        step = _STOP_POLL if deadline is None else min(_STOP_POLL, max(0.0, deadline - time.monotonic()))
        try:
            future.result(step)
            return
        except concurrent.futures.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
