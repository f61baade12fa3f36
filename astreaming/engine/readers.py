"""Open shard readers of the consumer thread, kept mapped while in use and closed least-recently-used.

Mapped pages a walk has read are given back every ``RELEASE_EVERY`` bytes it decodes (see
:mod:`astreaming.format.pages`): without that, the resident set of a long epoch grows by every page of every
shard still open, up to the dataset's size, although nothing of it is the process's own memory.
"""

from __future__ import annotations

from collections import OrderedDict

from astreaming.engine.shards import ShardTable
from astreaming.format.reader import ShardReader, open_shard

__all__ = ["RELEASE_EVERY", "ReaderCache"]

#: Bytes of samples decoded between two releases of the open readers' mapped pages: large enough that the
#: release (one ``madvise`` per open reader) and the minor faults that map pages again cost nothing next
#: to decoding, small enough to keep the resident set near the process's own memory. On a sequential
#: epoch of 10 KB samples the process peaked 15 MB above its imports at 8 MB, 9 MB at 2 MB and at 1 MB
#: (the kernel maps cached pages back in large folios, 2 MB here), at the same CPU per sample. That was
#: with the shard's offsets table read through the mapping, which kept the folio at the head of the file
#: resident too; with the table copied (``format/mds/reader.py``), 1 MB keeps the pages read between two
#: releases within two folios (4 MB), where 2 MB reaches three (6 MB: 2.5 MB decoded, segments of 64).
#: 2 MB all the same: at 1 MB the cached 10 KB-sample plain loop read 8-12% fewer samples per second
#: (idle machine, 5 interleaved rounds each: 94k and 90k against 102k and 104k samples/s; 7 Dec 2026),
#: for 3 MB of resident set.
RELEASE_EVERY = 2 << 20


class ReaderCache:
    """Maps each shard once; a bounded number stay open so huge datasets do not exhaust descriptors."""

    def __init__(self, table: ShardTable, *, allow_unsafe_types: bool, max_open: int = 256) -> None:
        self.table = table
        self.allow_unsafe_types = allow_unsafe_types
        self.max_open = max_open
        self._open: OrderedDict[int, ShardReader] = OrderedDict()
        self._inodes: dict[int, int] = {}
        self._raw: dict[int, int] = {}  # raw bytes of each shard seen (fixed by the index)
        self._mapped = 0  # raw bytes of the open shards
        # Shards handed out since the last release: only their pages can have been read since. Releasing
        # every open reader instead cost a cached epoch of 20 shards 841 madvise calls, not 100.
        self._touched: dict[int, None] = {}

    def weight(self, shard: int) -> int:
        """The mean size in bytes of a decoded sample of ``shard`` (at least 1): a walk adds it up per
        segment and calls :meth:`release_pages` every ``RELEASE_EVERY`` bytes."""
        return max(1, self._raw_bytes(shard) // max(1, int(self.table.samples_per_shard[shard])))

    def _raw_bytes(self, shard: int) -> int:
        size = self._raw.get(shard)
        if size is None:
            # From the index entry: no cache path is resolved on the way.
            size = self._raw[shard] = sum(raw.bytes for raw, _ in self.table.entries[shard].file_pairs())
        return size

    def release_pages(self, *, keep: int | None = None) -> None:
        """Drop the resident pages of the open readers handed out since the last release (they stay in
        the page cache); nothing to do while the open shards are smaller than ``RELEASE_EVERY`` in all.

        Args:
            keep: The shard the caller goes on reading without asking :meth:`get` again (a walk's current
                shard): it is released now and again at the next release.
        """
        if self._mapped < RELEASE_EVERY:
            return
        for shard in self._touched:
            reader = self._open.get(shard)
            if reader is not None:
                reader.release_pages()
        self._touched = {} if keep is None else {keep: None}

    def get(self, shard: int, *, inode: int | None = None) -> ShardReader:
        """The reader of a shard whose files are in the cache.

        Args:
            shard: The shard.
            inode: The inode of its (pinned) file now, if known: a reader that mapped another inode - an
                earlier copy, since evicted and downloaded again - is replaced, which frees the old copy's
                disk space.
        """
        self._touched[shard] = None
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
        self._mapped += self._raw_bytes(shard)
        if inode is not None:
            self._inodes[shard] = inode
        if len(self._open) > self.max_open:
            self.drop(next(iter(self._open)))
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
            self._mapped -= self._raw_bytes(shard)
            reader.close()

    def close(self) -> None:
        """Close every reader."""
        self._inodes.clear()
        self._mapped = 0
        while self._open:
            _, reader = self._open.popitem()
            reader.close()
