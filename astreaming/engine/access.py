"""Random access (``ds[i]``): one sample, on the same runtime, readers and pins as the sync walk.

A sample of a shard not yet here is read by byte ranges when the shard qualifies (see
:meth:`~astreaming.engine.ranges.RangeSampler.eligible`); otherwise its shard is fetched ahead of every
queued download and read whole. Under a cache limit the shard is pinned while its sample is decoded.
"""

from __future__ import annotations

import math
from typing import Any

from astreaming.engine.iterate import drop_forgotten, forget_shard
from astreaming.engine.ranges import RangeSampler
from astreaming.engine.readers import ReaderCache
from astreaming.engine.runtime import SyncRuntime
from astreaming.engine.shards import ShardTable
from astreaming.errors import FormatError

__all__ = ["read_sample"]


def read_sample(
    table: ShardTable,
    runtime: SyncRuntime,
    readers: ReaderCache,
    ranges: RangeSampler,
    shard: int,
    index: int,
) -> dict[str, Any]:
    """Sample ``index`` of ``shard``, downloading what it needs (blocks the calling thread).

    Raises:
        FormatError: the shard is source data (no remote to fetch it again from) and unreadable.
        StorageError: the shard could not be downloaded.
    """
    core = runtime.runtime
    is_ready = core.readiness.is_ready
    drop_forgotten(core, readers)
    if not is_ready(shard) and ranges.eligible(shard) and not table.is_local(shard):
        return runtime.loop_thread.call(ranges.sample(core, shard, index))
    pins = core.pins
    while True:
        if pins is None or not core.evictable[shard]:
            if not is_ready(shard) and not table.is_local(shard):
                runtime.waiter.wait_ready(shard, -math.inf)  # jumps the queue
            try:
                return readers.get(shard)[index]
            except FormatError:
                # Another process's cache_limit may have evicted it just now: fetch it again.
                if not core.evictable[shard] or table.is_local(shard):
                    raise
        else:
            runtime.waiter.wait_ready(shard, -math.inf)
            inode = pins.pin(shard)  # resident, and stays so while we read it
            if inode is not None:
                try:
                    return readers.get(shard, inode=inode)[index]
                finally:
                    pins.unpin(shard)
        # Evicted in between: the next wait fetches it again.
        forget_shard(core, readers, shard)
