"""The ``.meta`` file of split formats (JSONL, CSV/TSV/XSV): sample offsets into the data file.

Layout (reference §1.9, §1.10): ``uint32 N``, ``uint32 offsets[N+1]``, then the writer config JSON. JSONL
offsets start at 0; XSV offsets are absolute and start after the header line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from astreaming.errors import FormatError

__all__ = ["build_meta", "offsets_list", "parse_meta"]


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
