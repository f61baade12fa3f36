"""Walk a worker's plan: wait for each shard once, then decode its samples in the consumer's thread.

Only shard readiness crosses threads (DESIGN §2): the consumer checks readiness when the plan moves to
another shard and otherwise reads straight from the mapped file. Positions are reported to the
scheduler so downloads stay ``predownload`` samples ahead. With a ``cache_limit``, the shard being read
is pinned (never evicted) and readers of evicted shards are closed at the next shard switch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.engine.readers import ReaderCache
from astreaming.engine.runtime import Runtime, SyncRuntime
from astreaming.engine.shards import ShardTable

__all__ = ["aiter_plan", "first_needs", "iter_plan"]

#: Plan entries converted to Python ints at a time (bounds the memory of the conversion).
_CHUNK = 1 << 16
#: Report the consumer's position to the scheduler at least this often (in samples).
_ADVANCE_EVERY = 64


def first_needs(
    table: ShardTable, sample_ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Shard of every plan entry, and the plan's shards ordered by the position first needing them."""
    shards = table.shards_of(sample_ids)
    unique, first = np.unique(shards, return_index=True)
    order = np.argsort(first, kind="stable")
    return shards, unique[order].astype(np.int64), first[order].astype(np.int64)


class _Walk:
    """Consumer-side bookkeeping shared by the sync and async walks (no I/O, no waiting)."""

    def __init__(self, runtime: Runtime, readers: ReaderCache) -> None:
        self.runtime = runtime
        self.readers = readers
        self.ready: set[int] = set()  # shards this walk saw ready: no cross-thread check again
        self.pinned = -1

    def leave(self) -> None:
        """Unpin the shard being left and forget shards evicted meanwhile."""
        budget = self.runtime.budget
        if budget is not None and self.pinned >= 0:
            budget.unpin(self.pinned)
            self.pinned = -1
        evicted = self.runtime.evicted
        while evicted:
            shard = evicted.popleft()
            self.ready.discard(shard)
            self.readers.drop(shard)

    def enter(self, shard: int) -> bool:
        """Whether ``shard`` can be read now; pins it when a cache limit could evict it."""
        if shard not in self.ready:
            return False
        budget = self.runtime.budget
        if budget is None or not self.runtime.evictable[shard]:
            return True
        if budget.pin(shard):
            self.pinned = shard
            return True
        # Evicted between "ready" and the pin: fetch it again.
        budget.unpin(shard)
        self.ready.discard(shard)
        return False

    def at(self, position: int) -> None:
        self.runtime.next_use.advance(position)


def iter_plan(
    table: ShardTable, readers: ReaderCache, runtime: SyncRuntime, sample_ids: npt.NDArray[np.int64]
) -> Iterator[dict[str, Any]]:
    """Yield the samples of ``sample_ids`` in order, fetching shards ahead on the loop thread."""
    shards, order, first = first_needs(table, sample_ids)
    runtime.enqueue(shards, order, first)
    waiter = runtime.waiter
    walk = _Walk(runtime.runtime, readers)
    bounds = table.bounds.tolist()
    current, base, reader = -1, 0, None
    try:
        for start in range(0, len(sample_ids), _CHUNK):
            ids_chunk = sample_ids[start : start + _CHUNK].tolist()
            shards_chunk = shards[start : start + _CHUNK].tolist()
            for offset, (sample_id, shard) in enumerate(zip(ids_chunk, shards_chunk, strict=True)):
                if shard != current:
                    position = start + offset
                    walk.leave()
                    while not walk.enter(shard):
                        # Report the position first: the scheduler only starts shards within the
                        # look-ahead of the last reported position.
                        waiter.advance(position)
                        waiter.wait_ready(shard, position)
                        walk.ready.add(shard)
                    reader, base, current = readers.get(shard), bounds[shard], shard
                if not offset % _ADVANCE_EVERY:
                    waiter.advance(start + offset)
                    walk.at(start + offset)
                yield reader[sample_id - base]  # type: ignore[index]
    finally:
        walk.leave()
        # Stopped early or finished: nothing queued for this plan is needed any more (other requests
        # on the same scheduler, such as random access, are left alone).
        waiter.cancel_many(order.tolist())


async def aiter_plan(
    table: ShardTable, readers: ReaderCache, runtime: Runtime, sample_ids: npt.NDArray[np.int64]
) -> AsyncIterator[dict[str, Any]]:
    """The async twin of :func:`iter_plan`, on the caller's loop (no thread)."""
    shards, order, first = first_needs(table, sample_ids)
    runtime.enqueue(shards, order, first)
    scheduler = runtime.scheduler
    walk = _Walk(runtime, readers)
    bounds = table.bounds.tolist()
    current, base, reader = -1, 0, None
    try:
        for start in range(0, len(sample_ids), _CHUNK):
            ids_chunk = sample_ids[start : start + _CHUNK].tolist()
            shards_chunk = shards[start : start + _CHUNK].tolist()
            for offset, (sample_id, shard) in enumerate(zip(ids_chunk, shards_chunk, strict=True)):
                if shard != current:
                    position = start + offset
                    walk.leave()
                    while not walk.enter(shard):
                        scheduler.advance(position)
                        await scheduler.wait(shard, position)
                        walk.ready.add(shard)
                    reader, base, current = readers.get(shard), bounds[shard], shard
                if not offset % _ADVANCE_EVERY:
                    scheduler.advance(start + offset)
                    walk.at(start + offset)
                yield reader[sample_id - base]  # type: ignore[index]
    finally:
        walk.leave()
        scheduler.cancel_many(order.tolist())
