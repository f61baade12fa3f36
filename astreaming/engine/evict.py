"""Explicit eviction of one shard from the cache (mosaic's ``StreamingDataset.evict_shard``).

What eviction must guarantee, whatever owns the cache accounting:

1. Never delete data of a stream without a remote: those files are the dataset, not a cache
   (mosaic deleted them, #988). Refused with :class:`~astreaming.errors.ConfigError`.
2. Never delete a shard that is being read by any process on the node: a shard pinned (a plan walk or
   a random access holds its shared ``flock``) is refused with :class:`~astreaming.errors.CacheError`.
3. Delete the raw and compressed files, stop counting their bytes, and make every reader of this process
   forget the shard (``Runtime.readiness``): it is no longer ready (the next read fetches it again) and
   walks drop their open reader at their next shard switch.

Under a ``cache_limit`` the node ledger decides (:meth:`NodeBudget.evict`), so every process stops
counting the shard's bytes at once.
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
        freed = _delete_unpinned(table, shard)
    else:
        # Through the node ledger: under its lock, and only if no process on the node pins the shard.
        evicted = await budget.run(budget.evict, shard)
        if evicted is None:
            raise CacheError(f"evict_shard({shard}): the shard is being read; not evicted")
        freed = evicted
    runtime.readiness.forget(shard)  # as the budget's own evictions do: fetched again, readers dropped
    return freed


def _delete_unpinned(table: ShardTable, shard: int) -> int:
    """Delete the shard's files unless a process with a cache limit pins it (its shared flock)."""
    from astreaming.cache.pins import exclusive  # with the ledger's modules: only when evicting

    first = table.files(shard)[0].raw_path
    with exclusive(first) as locked:
        if not locked and first.exists():
            raise CacheError(f"evict_shard({shard}): the shard is being read; not evicted")
        return _delete_files(table, shard)
