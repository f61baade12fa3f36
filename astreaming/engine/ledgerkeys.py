"""How a dataset's shards appear in the node-wide cache ledger, and the smallest budget that can work.

Each stream with a remote caches under its ``local`` directory, which holds that directory's ledger; a
shard is keyed by the path of its first raw file relative to ``local`` (so two jobs caching the same
files agree on the key), and it occupies every raw and compressed file it lists. Streams without a remote
are the source of truth: they never enter a ledger; their bytes count against the limit as fixed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from astreaming.cache.budget import file_sizes, required_bytes
from astreaming.cache.ledger import Ledger, LedgerKey
from astreaming.engine.shards import ShardTable
from astreaming.errors import CacheError

__all__ = ["LedgerLayout", "check_node_budget", "ledger_layout"]


@dataclass(frozen=True)
class LedgerLayout:
    """The ledger of a dataset's cache directories and its shards' place in it.

    Attributes:
        ledger: Handle on the ledgers of every ``local`` of a stream with a remote.
        keys: The ledger key of each shard (None: never evicted).
        targets: The file a reader pins for each shard (None: never evicted, no pin).
        fixed: Bytes of the streams without a remote (shards and index), counted, never evicted.
        indexes: ``(key, bytes)`` of each cached ``index.json``.
        headroom: Bytes look-ahead downloads leave free: the shards the node's other readers may need
            next, so that look-ahead does not fill the room their sooner needs would then evict.
    """

    ledger: Ledger
    keys: list[LedgerKey | None]
    targets: list[Path | None]
    fixed: int
    indexes: list[tuple[LedgerKey, int]]
    headroom: int


def ledger_layout(table: ShardTable, cache_limit: int, *, readers: int) -> LedgerLayout:
    """Lay the dataset's shards out in the ledger and check the budget can let ``readers`` progress.

    Args:
        table: The dataset's shards.
        cache_limit: The budget in bytes.
        readers: Processes on this node reading the dataset at once (ranks per node x workers per rank).

    Raises:
        CacheError: ``cache_limit`` is smaller than what must be resident at once (each reader's shard
            plus one being prepared), naming the bytes needed.
    """
    roots: list[Path] = []
    root_of: dict[Path, int] = {}
    for shards in table.streams:
        if shards.stream.has_remote:
            local = table.caches[table.streams.index(shards)].local
            root_of.setdefault(local, len(roots))
            if root_of[local] == len(roots):
                roots.append(local)
    keys: list[LedgerKey | None] = []
    targets: list[Path | None] = []
    fixed = 0
    largest_raw = largest_footprint = 0
    for shard in range(table.num_shards):
        stream_id = int(table.stream_per_shard[shard])
        files = table.files(shard)
        largest_raw = max(largest_raw, table.raw_bytes(shard))
        largest_footprint = max(largest_footprint, table.max_bytes(shard))
        if not table.streams[stream_id].stream.has_remote:
            fixed += file_sizes(path for f in files for path in (f.raw_path, f.zip_path) if path is not None)
            keys.append(None)
            targets.append(None)
            continue
        local = table.caches[stream_id].local
        rel = [
            os.path.relpath(path, local)
            for f in files
            for path in (f.raw_path, f.zip_path)
            if path is not None
        ]
        keys.append(LedgerKey(root_of[local], rel[0], tuple(rel)))
        targets.append(files[0].raw_path)
    indexes: list[tuple[LedgerKey, int]] = []
    for stream_id, shards in enumerate(table.streams):
        index = table.caches[stream_id].index_path()
        size = shards.index_bytes
        with contextlib.suppress(FileNotFoundError):
            size = index.stat().st_size
        if shards.stream.has_remote:
            local = table.caches[stream_id].local
            index_rel = os.path.relpath(index, local)
            indexes.append((LedgerKey(root_of[local], index_rel, (index_rel,)), size))
        else:
            fixed += size
    check_node_budget(
        cache_limit,
        fixed=fixed + sum(b for _, b in indexes),
        largest_raw=largest_raw,
        largest_footprint=largest_footprint,
        readers=readers,
    )
    headroom = max(0, readers - 1) * largest_raw
    return LedgerLayout(Ledger(roots), keys, targets, fixed, indexes, headroom)


def check_node_budget(
    cache_limit: int, *, fixed: int, largest_raw: int, largest_footprint: int, readers: int
) -> None:
    """Refuse a budget with which ``readers`` processes could deadlock or thrash.

    Raises:
        CacheError: naming the bytes needed and why.
    """
    needed = required_bytes(
        fixed=fixed, largest_raw=largest_raw, largest_footprint=largest_footprint, readers=readers
    )
    if cache_limit < needed:
        raise CacheError(
            f"cache_limit={cache_limit} bytes is too small for {readers} processes reading this dataset on "
            f"this node: each may hold the shard it reads (up to {largest_raw} bytes) while one more is "
            f"prepared (up to {largest_footprint} bytes), next to {fixed} bytes that are never evicted: "
            f"it needs at least {needed} bytes"
        )
