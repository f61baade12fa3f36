"""The shards of every stream of a dataset as one table: sample → (shard, index) and cache paths."""

from __future__ import annotations

import bisect
import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from astreaming.cache.paths import CacheDir
from astreaming.cache.versionpins import VersionPins
from astreaming.format.index import FileInfo, MDSEntry, ShardEntry
from astreaming.format.mds.reader import MDSReader
from astreaming.stream import DownloadOptions, Stream

__all__ = ["ShardFile", "ShardTable", "StreamShards"]


@dataclass(frozen=True)
class StreamShards:
    """One stream with its parsed index and resolved download options."""

    stream: Stream
    entries: tuple[ShardEntry, ...]
    options: DownloadOptions
    index_bytes: int  # size of its index.json, counted by the cache budget
    index_digest: str = ""  # of its index.json's bytes: the versions of its files are kept under it


@dataclass(frozen=True)
class ShardFile:
    """One file a shard is read from (data, or JSON/XSV meta), and its compressed form if any."""

    raw: FileInfo
    zip: FileInfo | None
    raw_path: Path
    zip_path: Path | None


class ShardTable:
    """Every shard of every stream, in stream order then index order (mosaic's global shard ids)."""

    def __init__(self, streams: list[StreamShards]) -> None:
        self.streams = streams
        self.entries: list[ShardEntry] = [e for s in streams for e in s.entries]
        self.caches = [CacheDir(s.stream.local_root) for s in streams]
        counts = [len(s.entries) for s in streams]
        self.shards_per_stream = np.array(counts, dtype=np.int64)
        self.shard_offset_per_stream = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.stream_per_shard = np.repeat(np.arange(len(streams), dtype=np.int64), counts)
        self.samples_per_shard = np.array([e.samples for e in self.entries], dtype=np.int64)
        # bounds[s] is the first global sample id of shard s; bounds[-1] the total.
        self.bounds = np.concatenate([[0], np.cumsum(self.samples_per_shard)]).astype(np.int64)
        self.sample_offset_per_shard = self.bounds[:-1]
        self.samples_per_stream = np.array(
            [sum(e.samples for e in s.entries) for s in streams], dtype=np.int64
        )
        self.sample_offset_per_stream = np.concatenate([[0], np.cumsum(self.samples_per_stream)[:-1]]).astype(
            np.int64
        )
        self._bounds_list: list[int] = self.bounds.tolist()
        self._files: list[tuple[ShardFile, ...] | None] = [None] * len(self.entries)
        #: Per stream: the version of each remote file this cache was filled with (kept across evictions).
        self.pins = [VersionPins(c.root, s.index_digest) for c, s in zip(self.caches, streams, strict=True)]

    @property
    def num_samples(self) -> int:
        """Unique samples over all streams."""
        return self._bounds_list[-1]

    @property
    def num_shards(self) -> int:
        """Shards over all streams."""
        return len(self.entries)

    def locate(self, sample_id: int) -> tuple[int, int]:
        """The shard holding global sample ``sample_id`` and the sample's index within it."""
        shard = bisect.bisect_right(self._bounds_list, sample_id) - 1
        return shard, sample_id - self._bounds_list[shard]

    def shards_of(self, sample_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`locate` (shard ids only); O(n log S), no per-sample Python."""
        return (np.searchsorted(self.bounds, sample_ids, side="right") - 1).astype(np.int64)

    def check_columns(self, *, allow_unsafe_types: bool) -> None:
        """Compile every distinct MDS column layout once, so that an unknown encoding or a ``pkl``
        column without ``allow_unsafe_types`` fails at construction, before any shard is read."""
        seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
        for shard, entry in enumerate(self.entries):
            if not isinstance(entry, MDSEntry):
                continue
            layout = (entry.column_names, entry.column_encodings)
            if layout in seen:
                continue
            seen.add(layout)
            source = str(self.caches[int(self.stream_per_shard[shard])].root / entry.raw_data.basename)
            MDSReader.plan(entry, source=source, allow_unsafe_types=allow_unsafe_types)

    def stream_of(self, shard: int) -> StreamShards:
        """The stream a shard belongs to."""
        return self.streams[int(self.stream_per_shard[shard])]

    def files(self, shard: int) -> tuple[ShardFile, ...]:
        """The files of ``shard`` with their checked cache paths (data first, then meta)."""
        cached = self._files[shard]
        if cached is None:
            cache = self.caches[int(self.stream_per_shard[shard])]
            cached = tuple(
                ShardFile(
                    raw=raw,
                    zip=zipped,
                    raw_path=cache.path(raw.basename),
                    zip_path=None if zipped is None else cache.path(zipped.basename),
                )
                for raw, zipped in self.entries[shard].file_pairs()
            )
            self._files[shard] = cached
        return cached

    def is_local(self, shard: int) -> bool:
        """Whether every raw file of ``shard`` is in the cache (published files are always complete)."""
        return all(f.raw_path.exists() for f in self.files(shard))

    def local_bytes(self, shard: int) -> int:
        """Bytes the shard's files (raw, and zip where kept) occupy in the cache now."""
        total = 0
        for file in self.files(shard):
            for path in (file.raw_path, file.zip_path):
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        total += path.stat().st_size
        return total

    def raw_bytes(self, shard: int) -> int:
        """Bytes of the shard's raw files once decompressed."""
        return sum(f.raw.bytes for f in self.files(shard))

    def max_bytes(self, shard: int) -> int:
        """Peak bytes the shard occupies while being prepared (raw plus compressed)."""
        # From the index entry alone: the dataset's constructor asks this of every shard, and checking
        # each cache path (files) there would cost a first sample a pass over the disk.
        pairs = self.entries[shard].file_pairs()
        return sum(raw.bytes + (zipped.bytes if zipped else 0) for raw, zipped in pairs)
