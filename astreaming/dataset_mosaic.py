"""The parts of mosaic's ``StreamingDataset`` API that address shards and streams directly.

``prepare_shard``/``evict_shard`` (used by custom loops that manage the cache themselves),
``proportion_per_stream``, ``num_streams`` and ``spanner``. Mixed into
:class:`~astreaming.StreamingDataset`; kept apart so the dataset module stays about iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from astreaming.engine.evict import evict_shard as _evict
from astreaming.spanner import Spanner

if TYPE_CHECKING:
    from astreaming.engine.readers import ReaderCache
    from astreaming.engine.runtime import SyncRuntime
    from astreaming.engine.shards import ShardTable
    from astreaming.stream import Stream

__all__ = ["ShardStreamAPI"]


class ShardStreamAPI:
    """Shard- and stream-level methods of a dataset (mosaic's names and meaning)."""

    if TYPE_CHECKING:
        _table: ShardTable
        streams: Sequence[Stream]

        def _sync_parts(self) -> tuple[SyncRuntime, ReaderCache]: ...

    def _check_shard(self, shard_id: int, what: str) -> int:
        shard = int(shard_id)
        if not 0 <= shard < self._table.num_shards:
            raise IndexError(f"{what}({shard_id}): no such shard (0 <= id < {self._table.num_shards})")
        return shard

    def prepare_shard(self, shard_id: int, blocking: bool = True) -> None:
        """Download (and decompress) shard ``shard_id`` into the cache.

        Args:
            shard_id: Global shard id (streams in order, then index order).
            blocking: Wait until the shard is ready, raising its download error. ``False`` starts the
                download and returns; an error then surfaces when the shard is read.

        Raises:
            IndexError: no such shard.
            StorageError: the download failed after its retries (``blocking=True``).
        """
        shard = self._check_shard(shard_id, "prepare_shard")
        runtime, _ = self._sync_parts()
        if runtime.runtime.readiness.is_ready(shard):
            return
        if blocking:
            runtime.waiter.wait_ready(shard, -math.inf)  # ahead of any plan, like random access
        else:
            future = runtime.waiter.want(shard, -math.inf)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # reported on read

    def evict_shard(self, shard_id: int) -> None:
        """Delete shard ``shard_id``'s files from the cache; the next read downloads it again.

        Unlike mosaic, a shard of a stream without a remote (the files are the dataset) and a shard being
        read are never deleted: those raise instead.

        Raises:
            IndexError: no such shard.
            ConfigError: the shard's stream has no remote.
            CacheError: the shard is being read.
        """
        shard = self._check_shard(shard_id, "evict_shard")
        runtime, _ = self._sync_parts()
        runtime.loop_thread.call(_evict(runtime.runtime, self._table, shard))

    @property
    def num_streams(self) -> int:
        """Number of streams."""
        return len(self.streams)

    @property
    def proportion_per_stream(self) -> np.ndarray:
        """Each stream's share of an epoch, after weighting (mosaic's ``proportion_per_stream``)."""
        return np.array([float(s.proportion or 0.0) for s in self.streams], dtype=np.float64)

    @property
    def spanner(self) -> Spanner:
        """Global sample id -> ``(shard_id, index_in_shard)``."""
        return Spanner(self._table.samples_per_shard)
