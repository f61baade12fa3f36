"""Explicit eviction of one shard from the cache (mosaic's ``StreamingDataset.evict_shard``).

What eviction must guarantee, whatever owns the cache accounting:

1. Never delete data of a stream without a remote: those files are the dataset, not a cache
   (mosaic deleted them, #988). Refused with :class:`~astreaming.errors.ConfigError`.
2. Never delete a shard that is being read: a shard pinned in the budget (a plan walk or a random
   access reading it) is refused with :class:`~astreaming.errors.CacheError`.
3. Delete the raw and compressed files, stop counting their bytes, and make every reader of this process
   forget the shard: the scheduler no longer reports it ready (the next read fetches it again) and
   walks drop their open reader at their next shard switch (``Runtime.evicted``).

Today the budget and the readiness it guards are per process (``Runtime``); the decision runs on the
runtime's loop so that it cannot interleave with a fetch committing the same shard.
"""

from __future__ import annotations

import contextlib

from astreaming.engine.runtime import Runtime
from astreaming.engine.shards import ShardTable
from astreaming.errors import CacheError, ConfigError

__all__ = ["evict_shard"]


def _delete_files(table: ShardTable, shard: int) -> int:
    """Remove the shard's raw and compressed files; the bytes they held."""
    freed = 0
    for file in table.files(shard):
        for path in (file.raw_path, file.zip_path):
            if path is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                freed += size
    return freed


async def evict_shard(runtime: Runtime, table: ShardTable, shard: int) -> int:
    """Delete ``shard``'s files from the cache (run on ``runtime``'s loop).

    Returns:
        Bytes deleted (0 when the shard was not in the cache).

    Raises:
        ConfigError: the shard belongs to a stream without a remote.
        CacheError: the shard is being read (pinned).
    """
    stream = table.stream_of(shard).stream
    if not stream.has_remote:
        raise ConfigError(
            f"evict_shard({shard}): the shard belongs to {stream!r}, which has no remote; its files "
            "are the dataset itself and are never deleted"
        )
    budget = runtime.budget
    if budget is None:
        freed = _delete_files(table, shard)
    else:
        # Under the budget's lock, so that no pin can arrive between the check and the deletion
        # (the same rule the budget's own eviction follows). To be re-wired to the node ledger.
        with budget._lock:
            if shard in budget._pins:
                raise CacheError(f"evict_shard({shard}): the shard is being read; not evicted")
            freed = _delete_files(table, shard)
            recorded = budget._sizes.pop(shard, 0)
            budget._usage -= recorded
            budget._fixed.discard(shard)
            if freed:
                budget._evictions += 1
                budget._evicted_bytes += freed
    runtime._on_evict(shard)  # the budget's own eviction notice: forget readiness, drop readers
    return freed
