"""Open shard readers of the consumer thread, kept mapped while in use and closed least-recently-used."""

from __future__ import annotations

from collections import OrderedDict

from astreaming.engine.shards import ShardTable
from astreaming.format.reader import ShardReader, open_shard

__all__ = ["ReaderCache"]


class ReaderCache:
    """Maps each shard once; a bounded number stay open so huge datasets do not exhaust descriptors."""

    def __init__(self, table: ShardTable, *, allow_unsafe_types: bool, max_open: int = 256) -> None:
        self.table = table
        self.allow_unsafe_types = allow_unsafe_types
        self.max_open = max_open
        self._open: OrderedDict[int, ShardReader] = OrderedDict()

    def get(self, shard: int) -> ShardReader:
        """The reader of a shard whose files are in the cache."""
        reader = self._open.get(shard)
        if reader is not None:
            self._open.move_to_end(shard)
            return reader
        stream = self.table.stream_of(shard)
        reader = open_shard(
            stream.stream.local_root, self.table.entries[shard], allow_unsafe_types=self.allow_unsafe_types
        )
        self._open[shard] = reader
        if len(self._open) > self.max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        return reader

    def drop(self, shard: int) -> None:
        """Close a shard's reader (before its files are evicted)."""
        reader = self._open.pop(shard, None)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        """Close every reader."""
        while self._open:
            _, reader = self._open.popitem()
            reader.close()
