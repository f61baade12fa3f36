"""Walk a worker's plan: wait for each shard once, then decode its samples in the consumer's thread.

Only shard readiness crosses threads (DESIGN §2): the consumer checks readiness when the plan moves to
another shard and otherwise reads straight from the mapped file. Positions are reported to the
scheduler so downloads stay ``predownload`` samples ahead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.engine.readers import ReaderCache
from astreaming.engine.runtime import Runtime, SyncRuntime
from astreaming.engine.shards import ShardTable

__all__ = ["first_needs", "iter_plan", "aiter_plan"]

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


def iter_plan(
    table: ShardTable, readers: ReaderCache, runtime: SyncRuntime, sample_ids: npt.NDArray[np.int64]
) -> Iterator[dict[str, Any]]:
    """Yield the samples of ``sample_ids`` in order, fetching shards ahead on the loop thread."""
    shards, order, first = first_needs(table, sample_ids)
    runtime.enqueue(order, first)
    waiter = runtime.waiter
    bounds = table.bounds.tolist()
    current, base, reader = -1, 0, None
    ready: set[int] = set()  # shards this walk already saw ready: no cross-thread check again
    try:
        for start in range(0, len(sample_ids), _CHUNK):
            ids_chunk = sample_ids[start : start + _CHUNK].tolist()
            shards_chunk = shards[start : start + _CHUNK].tolist()
            for offset, (sample_id, shard) in enumerate(zip(ids_chunk, shards_chunk, strict=True)):
                if shard != current:
                    if shard not in ready:
                        # Report the position first: the scheduler only starts shards within the
                        # look-ahead of the last reported position.
                        waiter.advance(start + offset)
                        waiter.wait_ready(shard, start + offset)
                        ready.add(shard)
                    reader, base, current = readers.get(shard), bounds[shard], shard
                if not offset % _ADVANCE_EVERY:
                    waiter.advance(start + offset)
                yield reader[sample_id - base]  # type: ignore[index]
    finally:
        # Stopped early or finished: nothing queued for this plan is needed any more (other requests
        # on the same scheduler, such as random access, are left alone).
        waiter.cancel_many(order.tolist())


async def aiter_plan(
    table: ShardTable, readers: ReaderCache, runtime: Runtime, sample_ids: npt.NDArray[np.int64]
) -> AsyncIterator[dict[str, Any]]:
    """The async twin of :func:`iter_plan`, on the caller's loop (no thread)."""
    shards, order, first = first_needs(table, sample_ids)
    runtime.enqueue(order, first)
    scheduler = runtime.scheduler
    bounds = table.bounds.tolist()
    current, base, reader = -1, 0, None
    ready: set[int] = set()  # shards this walk already saw ready: no cross-thread check again
    try:
        for start in range(0, len(sample_ids), _CHUNK):
            ids_chunk = sample_ids[start : start + _CHUNK].tolist()
            shards_chunk = shards[start : start + _CHUNK].tolist()
            for offset, (sample_id, shard) in enumerate(zip(ids_chunk, shards_chunk, strict=True)):
                if shard != current:
                    if shard not in ready:
                        scheduler.advance(start + offset)
                        await scheduler.wait(shard, start + offset)
                        ready.add(shard)
                    reader, base, current = readers.get(shard), bounds[shard], shard
                if not offset % _ADVANCE_EVERY:
                    scheduler.advance(start + offset)
                yield reader[sample_id - base]  # type: ignore[index]
    finally:
        scheduler.cancel_many(order.tolist())
