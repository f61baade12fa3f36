"""Columnar decoding of MDS samples (``MDSReader.get_columns``): the same values as per-sample decoding."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mds_samples import COLUMNS, STACKED, assert_same_sample, sample

from astreaming.errors import FormatError
from astreaming.format.index import MDSEntry, load_index
from astreaming.format.mds.columns import STACKED_KINDS, Columns
from astreaming.format.mds.reader import MDSReader
from astreaming.format.reader import open_shard

from .conftest import WriteFn


def _shard(write_mds: WriteFn, n: int) -> tuple[Path, MDSEntry]:
    root = write_mds(COLUMNS, [sample(i) for i in range(n)], size_limit=None)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    return root, entry


def test_columns_hold_the_per_sample_values(write_mds: WriteFn) -> None:
    root, entry = _shard(write_mds, 40)
    rng = np.random.default_rng(7)
    with MDSReader.open(root / entry.raw_data.basename, entry) as reader:
        for indices in ([0], list(range(40)), rng.permutation(40).tolist(), [5, 5, 39, 0], []):
            columns = reader.get_columns(indices)
            assert isinstance(columns, Columns) and len(columns) == len(indices)
            want = reader.get_many(indices)
            got = columns.samples()
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert_same_sample(g, w)


def test_numeric_columns_are_stacked_arrays(write_mds: WriteFn) -> None:
    root, entry = _shard(write_mds, 12)
    with MDSReader.open(root / entry.raw_data.basename, entry) as reader:
        indices = [11, 3, 7]
        columns = reader.get_columns(indices)
        assert isinstance(columns, Columns)
        stacked = {c.name: v for c, v in zip(columns.layout.columns, columns.values, strict=True)
                   if c.kind in STACKED_KINDS}  # fmt: skip
        assert set(stacked) == STACKED
        for name, array in stacked.items():
            values = [sample(i)[name] for i in indices]
            want = np.stack([np.asarray(v, dtype=array.dtype) for v in values])
            assert array.shape == want.shape and array.tobytes() == want.tobytes(), name
        assert stacked["id"].dtype == np.int64 and stacked["img"].shape == (3, 2, 3)
        listed = {c.name for c in columns.layout.columns if c.kind not in STACKED_KINDS}
        assert listed == set(COLUMNS) - STACKED


def test_decompressed_shard_in_memory(write_mds: WriteFn) -> None:
    root, entry = _shard(write_mds, 9)
    reader = MDSReader.from_bytes((root / entry.raw_data.basename).read_bytes(), entry, source="mem")
    columns = reader.get_columns([8, 0])
    assert isinstance(columns, Columns)
    for got, want in zip(columns.samples(), reader.get_many([8, 0]), strict=True):
        assert_same_sample(got, want)


def _corrupted(
    write_mds: WriteFn, sample_index: int, mutate: Callable[[bytearray, int, int], None]
) -> MDSReader:
    """A reader of a 6-sample shard whose sample ``sample_index`` ``mutate(data, begin, end)`` changed."""
    root, entry = _shard(write_mds, 6)
    data = bytearray((root / entry.raw_data.basename).read_bytes())
    begin, end = struct.unpack_from("<2I", data, 4 + 4 * sample_index)
    mutate(data, begin, end)
    (root / entry.raw_data.basename).write_bytes(bytes(data))
    reader = open_shard(root, entry)
    assert isinstance(reader, MDSReader)
    return reader


def test_corrupt_lengths_raise_the_per_sample_error(write_mds: WriteFn) -> None:
    def lengthen(data: bytearray, begin: int, end: int) -> None:
        struct.pack_into("<I", data, begin, 1000)  # the first variable length

    reader = _corrupted(write_mds, 2, lengthen)
    assert isinstance(reader.get_columns([0, 1]), Columns)
    with pytest.raises(FormatError, match="column lengths do not add up") as info:
        reader.get_columns([0, 2])
    assert "shard.00000.mds" in str(info.value)
    reader.close()


def test_corrupt_value_raises_the_per_sample_error(write_mds: WriteFn) -> None:
    def break_utf8(data: bytearray, begin: int, end: int) -> None:
        at = data.find("ééé".encode(), begin, end)  # the text
        assert at > 0
        data[at] = 0xFF

    reader = _corrupted(write_mds, 3, break_utf8)
    with pytest.raises(FormatError, match="corrupt MDS sample 3: UnicodeDecodeError") as info:
        reader.get_columns([1, 3])
    assert "shard.00000.mds" in str(info.value)
    reader.close()


def test_bad_indices_and_closed_reader(write_mds: WriteFn) -> None:
    root, entry = _shard(write_mds, 4)
    reader = MDSReader.open(root / entry.raw_data.basename, entry)
    with pytest.raises(IndexError):
        reader.get_columns([4])
    with pytest.raises(IndexError, match="negative"):
        reader.get_columns([0, -1])
    reader.close()
    with pytest.raises(IndexError, match="closed"):
        reader.get_columns([0])
