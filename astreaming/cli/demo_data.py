"""The demo's synthetic dataset: how it is written, and how every sample read back is checked.

Sample ``i`` has three columns: ``id`` (``i``), ``data`` (``sample_bytes`` bytes: ``i`` as 8 little-endian
bytes, then random bytes, then zeros, so zstd has something to compress) and ``crc`` (CRC-32 of
``data``). A reader can check a sample on its own, in about a microsecond: the id is in range and
seen once, the payload has the right length, starts with the id and matches its checksum.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astreaming.errors import AstreamingError
from astreaming.format.index import ShardEntry, load_index
from astreaming.output.writers import MDSWriter

__all__ = ["COLUMNS", "DemoCheckError", "SampleChecker", "WrittenDataset", "write_dataset"]

COLUMNS = {"id": "int", "data": "bytes", "crc": "uint32"}
HASHES = ("sha1", "xxh64")
_ID_BYTES = 8
# Samples generated per numpy call: one call per chunk, not per sample.
_CHUNK = 4096


class DemoCheckError(AstreamingError):
    """A sample read back is wrong, missing or repeated, or a resumed run diverged."""


@dataclass(frozen=True)
class WrittenDataset:
    """What :func:`write_dataset` produced.

    Attributes:
        root: The dataset directory (holds index.json).
        entries: Its shard entries.
        seconds: Time spent writing.
    """

    root: Path
    entries: list[ShardEntry]
    seconds: float

    @property
    def samples(self) -> int:
        """Samples in the dataset."""
        return sum(e.samples for e in self.entries)

    @property
    def raw_bytes(self) -> int:
        """Uncompressed shard bytes."""
        return sum(e.raw_data.bytes for e in self.entries)

    @property
    def stored_bytes(self) -> int:
        """Bytes a reader downloads: the compressed shards."""
        return sum(f.bytes for e in self.entries for f in e.fetch_files())

    @property
    def index_bytes(self) -> int:
        """Size of index.json."""
        return (self.root / "index.json").stat().st_size


def _payloads(start: int, count: int, sample_bytes: int, seed: int) -> np.ndarray:
    """``count`` payloads as rows of a uint8 matrix: id prefix, random half, zero tail."""
    rows = np.zeros((count, sample_bytes), dtype=np.uint8)
    ids = np.arange(start, start + count, dtype="<i8")
    prefix = min(_ID_BYTES, sample_bytes)
    rows[:, :prefix] = ids.view(np.uint8).reshape(count, _ID_BYTES)[:, :prefix]
    random_end = max(prefix, sample_bytes // 2)
    rng = np.random.default_rng([seed, start])
    rows[:, prefix:random_end] = rng.integers(0, 256, size=(count, random_end - prefix), dtype=np.uint8)
    return rows


def write_dataset(
    root: Path, *, samples: int, sample_bytes: int, shard_bytes: int, seed: int = 0
) -> WrittenDataset:
    """Write the synthetic MDS dataset (zstd, sha1 + xxh64 hashes) to ``root`` with MDSWriter."""
    start = time.perf_counter()
    with MDSWriter(
        out=str(root), columns=COLUMNS, compression="zstd", hashes=list(HASHES), size_limit=shard_bytes
    ) as writer:
        for chunk_start in range(0, samples, _CHUNK):
            count = min(_CHUNK, samples - chunk_start)
            rows = _payloads(chunk_start, count, sample_bytes, seed)
            for offset in range(count):
                data = rows[offset].tobytes()
                writer.write({"id": chunk_start + offset, "data": data, "crc": zlib.crc32(data)})
    return WrittenDataset(root, load_index(root / "index.json"), time.perf_counter() - start)


@dataclass
class SampleChecker:
    """Checks each sample of one epoch as it arrives and records the order of ids.

    Args:
        samples: Samples in the dataset (ids are ``0..samples-1``).
        sample_bytes: Expected payload length.
    """

    samples: int
    sample_bytes: int
    order: list[int] = field(default_factory=list)
    _seen: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._seen = np.zeros(self.samples, dtype=bool)

    def check(self, sample: Mapping[str, Any]) -> None:
        """Check one sample; raise DemoCheckError naming the sample if it is wrong or repeated."""
        sid = int(sample["id"])
        if not 0 <= sid < self.samples:
            raise DemoCheckError(f"sample id {sid} is outside 0..{self.samples - 1}")
        if self._seen[sid]:
            raise DemoCheckError(f"sample {sid} was yielded twice in one epoch")
        self._seen[sid] = True
        data = sample["data"]
        if len(data) != self.sample_bytes:
            raise DemoCheckError(f"sample {sid}: payload has {len(data)} bytes, expected {self.sample_bytes}")
        prefix = min(_ID_BYTES, self.sample_bytes)
        if data[:prefix] != sid.to_bytes(_ID_BYTES, "little")[:prefix]:
            raise DemoCheckError(f"sample {sid}: payload belongs to another sample")
        if zlib.crc32(data) != int(sample["crc"]):
            raise DemoCheckError(f"sample {sid}: payload checksum mismatch (corrupt bytes)")
        self.order.append(sid)

    def check_all(self, batch: Iterable[Mapping[str, Any]]) -> int:
        """Check every sample of a batch; return how many there were."""
        n = 0
        for sample in batch:
            self.check(sample)
            n += 1
        return n

    def finish(self) -> None:
        """Raise DemoCheckError unless every id was seen."""
        missing = int(self.samples - np.count_nonzero(self._seen))
        if missing:
            first = int(np.flatnonzero(~self._seen)[0])
            raise DemoCheckError(
                f"{missing} of {self.samples} samples never arrived (first missing: {first})"
            )
