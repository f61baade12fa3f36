"""The ``.meta`` file of split formats (JSONL, CSV/TSV/XSV): sample offsets into the data file.

Layout (reference §1.9, §1.10): ``uint32 N``, ``uint32 offsets[N+1]``, then the writer config JSON. JSONL
offsets start at 0; XSV offsets are absolute and start after the header line.
"""

from __future__ import annotations

import abc
import mmap
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.errors import FormatError
from astreaming.format.pages import release_pages

__all__ = ["LineShardReader", "build_meta", "offsets_list", "parse_meta"]


def build_meta(first: int, lengths: Sequence[int], config_json: bytes) -> bytes:
    """Meta file bytes for samples of ``lengths`` bytes starting at data offset ``first``."""
    offsets = np.empty(len(lengths) + 1, np.int64)
    offsets[0] = first
    np.cumsum(np.asarray(lengths, np.int64), out=offsets[1:])
    offsets[1:] += first
    if offsets[-1] >= 1 << 32:
        raise FormatError(f"data file would be {int(offsets[-1])} bytes; meta offsets are uint32 (< 4 GiB)")
    return np.uint32(len(lengths)).tobytes() + offsets.astype("<u4").tobytes() + config_json


def parse_meta(
    meta: bytes, *, source: str, samples: int, first: int, data_size: int
) -> npt.NDArray[np.uint32]:
    """Validate a meta file against its index entry and data file; return the ``N + 1`` offsets.

    Raises:
        FormatError: naming ``source`` when the meta file is truncated, N differs from the index,
            offsets are not monotonic, do not start at ``first`` or do not end at ``data_size``.
    """
    if len(meta) < 4:
        raise FormatError(f"{source}: truncated meta file ({len(meta)} bytes)")
    num = int(np.frombuffer(meta, "<u4", 1)[0])
    if num != samples:
        raise FormatError(f"{source}: meta file lists {num} samples but the index says {samples}")
    if len(meta) < 4 + 4 * (num + 1):
        raise FormatError(f"{source}: truncated meta file: {len(meta)} bytes for {num} samples")
    offsets = np.frombuffer(meta, "<u4", num + 1, 4).copy()
    if int(offsets[0]) != first:
        raise FormatError(f"{source}: first offset is {int(offsets[0])}, expected {first}")
    if num and bool(np.any(np.diff(offsets.astype(np.int64)) <= 0)):
        raise FormatError(f"{source}: offsets are not increasing")
    if int(offsets[num]) != data_size:
        kind = "point past the end of" if int(offsets[num]) > data_size else "stop before the end of"
        raise FormatError(
            f"{source}: offsets {kind} the data file ({int(offsets[num])} vs {data_size} bytes)"
        )
    return offsets


def offsets_list(offsets: npt.NDArray[np.uint32]) -> Sequence[int]:
    """A sequence whose indexing yields Python ints fast (hot path of the split readers)."""
    if sys.byteorder == "little":
        return memoryview(offsets.astype("<u4").tobytes()).cast("I")
    values: list[int] = offsets.astype(np.int64).tolist()  # pragma: no cover - big-endian hosts
    return values  # pragma: no cover


class LineShardReader(abc.ABC):
    """What the JSONL and XSV readers share: a data file of one line per sample, indexed by its meta file.

    Subclasses set up their columns and implement :meth:`get_item` (decoding the line ``get_bytes`` gives).

    Args:
        data: the data file (mmap or bytes).
        meta: the meta file bytes.
        samples: the sample count the index records.
        first: the offset of the first sample (0 for JSONL, the header length for XSV).
        source: the data file, named in errors.
    """

    def __init__(
        self, data: mmap.mmap | bytes, meta: bytes, *, samples: int, first: int, source: str
    ) -> None:
        self.source = source
        self.offsets = parse_meta(
            meta, source=f"{source}.meta", samples=samples, first=first, data_size=len(data)
        )
        self._offs = offsets_list(self.offsets)
        self._buf = data
        self._num = samples

    @property
    def samples(self) -> int:
        """Number of samples in the shard."""
        return self._num

    def __len__(self) -> int:
        return self._num

    def get_bytes(self, index: int) -> bytes:
        """The stored line of sample ``index``, newline included."""
        if not 0 <= index < self._num:
            raise IndexError(f"{self.source}: sample {index} out of range (shard has {self._num})")
        return bytes(self._buf[self._offs[index] : self._offs[index + 1]])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Decode sample ``index`` (negative counts from the end)."""
        return self.get_item(index + self._num if index < 0 else index)

    @abc.abstractmethod
    def get_item(self, index: int) -> dict[str, Any]:
        """Decode sample ``index`` (``0 <= index < len``)."""

    def release_pages(self) -> None:
        """Drop this process's resident pages of the data mapping (see :mod:`astreaming.format.pages`)."""
        release_pages(self._buf)

    def close(self) -> None:
        """Release the data mapping."""
        buf, self._buf, self._num = self._buf, b"", 0
        if isinstance(buf, mmap.mmap):
            buf.close()
