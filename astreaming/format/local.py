"""LocalDataset: map-style random access to a dataset already on local disk (reference §7.3)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astreaming.format.index import MDSEntry, ShardEntry, load_index
from astreaming.format.mds.reader import MDSReader
from astreaming.format.reader import ShardReader, open_shard

__all__ = ["LocalDataset"]


class LocalDataset:
    """Map-style dataset over ``local[/split]/index.json`` (MDS, JSONL, CSV/TSV/XSV, any compression).

    ``len(ds)`` is the number of samples; ``ds[i]`` accepts an int (negative wraps), a slice, or a list /
    1-D integer array (returns a list), like mosaic's ``Array``. It has ``__len__`` and ``__getitem__``
    only, so a torch ``DataLoader`` takes it as a map-style dataset without torch being imported here.
    Each shard is opened (mapped) on first use and kept open; compressed shards whose raw file is absent
    are decompressed into memory.

    Args:
        local: the dataset directory.
        split: optional sub-directory.
        allow_unsafe_types: permit ``pkl`` MDS columns.

    Raises:
        FormatError: the index is missing or malformed.
        ConfigError: a shard has a ``pkl`` column and ``allow_unsafe_types`` is False (checked at init).
    """

    def __init__(
        self, local: str | Path, split: str | None = None, *, allow_unsafe_types: bool = False
    ) -> None:
        self.local = str(local)
        self.split = split
        self.root = Path(local) / split if split else Path(local)
        self.allow_unsafe_types = allow_unsafe_types
        self.shards: list[ShardEntry] = load_index(self.root / "index.json")
        counts = np.array([s.samples for s in self.shards], np.int64)
        # ends[k] = samples in shards 0..k; sample i lives in the first shard whose end exceeds i.
        self._ends = np.cumsum(counts)
        self._ends_list: list[int] = self._ends.tolist()
        self.num_samples = int(self._ends[-1]) if len(self.shards) else 0
        self._readers: list[ShardReader | None] = [None] * len(self.shards)
        # Fail at init, not mid-epoch, on a pkl column nobody opted into or an unknown encoding:
        # check each distinct MDS column layout once.
        layouts: set[tuple[Any, ...]] = set()
        for entry in self.shards:
            if isinstance(entry, MDSEntry):
                layout = (entry.column_names, entry.column_encodings, entry.column_sizes)
                if layout not in layouts:
                    layouts.add(layout)
                    source = str(self.root / entry.raw_data.basename)
                    MDSReader.plan(entry, source=source, allow_unsafe_types=allow_unsafe_types)
        # The shard used last: reads inside it skip the shard search and go straight to its decoder.
        self._lo = self._n = 0
        self._get: Callable[[int], dict[str, Any]] = _no_shard

    @property
    def size(self) -> int:
        """Number of samples (mosaic's ``Array.size``)."""
        return self.num_samples

    def __len__(self) -> int:
        return self.num_samples

    def _reader(self, shard: int) -> ShardReader:
        reader = self._readers[shard]
        if reader is None:
            reader = open_shard(self.root, self.shards[shard], allow_unsafe_types=self.allow_unsafe_types)
            self._readers[shard] = reader
        return reader

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard, index within shard)`` of sample ``index`` (0 <= index < len)."""
        # bisect on a list is the scalar form of np.searchsorted(ends, i, "right"): O(log shards),
        # without numpy's per-call overhead on the hot path.
        shard = bisect.bisect_right(self._ends_list, index)
        start = self._ends_list[shard - 1] if shard else 0
        return shard, index - start

    def get_item(self, index: int) -> dict[str, Any]:
        """Sample ``index`` (``0 <= index < len``)."""
        j = index - self._lo
        if 0 <= j < self._n:
            return self._get(j)
        if not 0 <= index < self.num_samples:
            raise IndexError(
                f"{self.root}: sample index {index} out of range (dataset has {self.num_samples})"
            )
        shard, offset = self.locate(index)
        reader = self._reader(shard)
        self._get = reader.get_item
        self._lo = index - offset
        self._n = self.shards[shard].samples
        return self._get(offset)

    def __getitem__(self, index: Any) -> Any:
        """An int (negative wraps), a slice, or a sequence/array of ints (returns a list)."""
        if type(index) is int:  # the hot path: one subtraction and a compare before the decoder
            j = index - self._lo
            if 0 <= j < self._n:
                return self._get(j)
            return self.get_item(index + self.num_samples if index < 0 else index)
        if isinstance(index, np.integer):
            return self[int(index)]
        if isinstance(index, slice):
            return [self.get_item(i) for i in range(*index.indices(self.num_samples))]
        if isinstance(index, np.ndarray) or (
            isinstance(index, Sequence) and not isinstance(index, (str, bytes))
        ):
            return [self[i] for i in (index.tolist() if isinstance(index, np.ndarray) else index)]
        raise TypeError(
            f"LocalDataset indices must be int, slice or a sequence of ints, not {type(index).__name__}"
        )

    def shard_of(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Vectorised :meth:`locate`: the shard of each sample index."""
        return np.searchsorted(self._ends, np.asarray(indices, np.int64), side="right")

    def close(self) -> None:
        """Close every open shard."""
        for reader in self._readers:
            if reader is not None:
                reader.close()
        self._readers = [None] * len(self.shards)
        self._get = _no_shard
        self._lo = self._n = 0

    def __getstate__(self) -> dict[str, Any]:
        # Mappings do not pickle; DataLoader workers (spawn) reopen shards lazily.
        state = self.__dict__.copy()
        state["_readers"] = [None] * len(self.shards)
        state["_get"] = _no_shard
        state["_lo"] = state["_n"] = 0
        return state

    def __repr__(self) -> str:
        return f"LocalDataset({self.local!r}, split={self.split!r}, samples={self.num_samples})"


def _no_shard(index: int) -> dict[str, Any]:  # pragma: no cover - never called: the cached range is empty
    raise IndexError(index)
