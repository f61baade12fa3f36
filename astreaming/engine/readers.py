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
        self._inodes: dict[int, int] = {}

    def get(self, shard: int, *, inode: int | None = None) -> ShardReader:
        """The reader of a shard whose files are in the cache.

        Args:
            shard: The shard.
            inode: The inode of its (pinned) file now, if known: a reader that mapped another inode - an
                earlier copy, since evicted and downloaded again - is replaced, which frees the old copy's
                disk space.
        """
        reader = self._open.get(shard)
        if reader is not None and inode is not None and self._inodes.get(shard) != inode:
            self.drop(shard)
            reader = None
        if reader is not None:
            self._open.move_to_end(shard)
            return reader
        stream = self.table.stream_of(shard)
        reader = open_shard(
            stream.stream.local_root, self.table.entries[shard], allow_unsafe_types=self.allow_unsafe_types
        )
        self._open[shard] = reader
        if inode is not None:
            self._inodes[shard] = inode
        if len(self._open) > self.max_open:
            oldest_shard, oldest = self._open.popitem(last=False)
            self._inodes.pop(oldest_shard, None)
            oldest.close()
        return reader

    def prune_replaced(self) -> None:
        """Close readers whose file was deleted or replaced since they mapped it (another process's
        eviction): a mapping keeps a deleted file's disk space in use until it is closed."""
        for shard, inode in list(self._inodes.items()):
            try:
                current = self.table.files(shard)[0].raw_path.stat().st_ino
            except FileNotFoundError:
                current = -1
            if current != inode:
                self.drop(shard)

    def drop(self, shard: int) -> None:
        """Close a shard's reader (before its files are evicted)."""
        reader = self._open.pop(shard, None)
        self._inodes.pop(shard, None)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        """Close every reader."""
        self._inodes.clear()
        while self._open:
            _, reader = self._open.popitem()
            reader.close()
