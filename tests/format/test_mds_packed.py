"""Packed str and bytes columns (``format/mds/packed.py``): the values of the per-sample decoder, exactly.

A layout whose only non-numeric columns are ``str`` and ``bytes`` decodes a run of samples into
``PackedList``\\ s (the pickle of each column's list, made by numpy); ``Columns.samples()`` and
``PackedList.tolist()`` must give what ``get_many`` gives, and runs that cannot be packed exactly (non-ASCII
text, long values) must come back as plain lists of the same values.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming.errors import FormatError
from astreaming.format.index import MDSEntry, load_index
from astreaming.format.mds import columns as columns_module
from astreaming.format.mds.columns import PACK_MIN_ROWS, Columns
from astreaming.format.mds.packed import PACK_MEAN_MAX, PackedList, payload
from astreaming.format.mds.reader import MDSReader

from .conftest import WriteFn

# Sorted by name, as the writer stores them: a str before a fixed column, bytes between fixed ones.
COLUMNS = {"a_text": "str", "b_id": "int", "c_blob": "bytes", "d_x": "float32", "e_tag": "str"}


@pytest.fixture(autouse=True)
def _pack_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check packing itself, on runs of every length (a run shorter than PACK_MIN_ROWS is
    decoded value by value by default: see the last test)."""
    monkeypatch.setattr(columns_module, "PACK_MIN_ROWS", 0)


def _sample(i: int, long_every: int = 0) -> dict[str, Any]:
    # 0, 255 and > 255 bytes (a 4-byte length), the mean well under PACK_MEAN_MAX.
    blob_len = 300 if long_every and i % long_every == 0 else 255 if i % 40 == 1 else (i * 7) % 64
    return {
        "a_text": f"t{i}" * (i % 4),  # empty for i % 4 == 0
        "b_id": (-1) ** i * (i << 33),
        "c_blob": bytes((i + k) % 256 for k in range(blob_len)),
        "d_x": np.float32(i / 3),
        "e_tag": "x" * (256 + i if i % 97 == 0 else i % 20),  # 256 and more: BINUNICODE's 4-byte length
    }


def _reader(
    write_mds: WriteFn, samples: list[dict[str, Any]], columns: dict[str, str] = COLUMNS
) -> MDSReader:
    root = write_mds(columns, samples, size_limit=None)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    return MDSReader.open(root / entry.raw_data.basename, entry)


def _assert_same(reader: MDSReader, indices: list[int]) -> Columns:
    columns = reader.get_columns(indices)
    assert isinstance(columns, Columns)
    want = reader.get_many(indices)
    got = columns.samples()
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)
        for key in w:
            assert type(g[key]) is type(w[key]), key
            assert np.asarray(g[key]).tobytes() == np.asarray(w[key]).tobytes(), key
    return columns


def _kinds(columns: Columns) -> dict[str, str]:
    return {c.name: type(v).__name__ for c, v in zip(columns.layout.columns, columns.values, strict=True)}


def test_ascii_text_and_bytes_are_packed_and_decode_to_the_same_values(write_mds: WriteFn) -> None:
    reader = _reader(write_mds, [_sample(i, long_every=50) for i in range(600)])
    rng = np.random.default_rng(3)
    for indices in (list(range(256)), rng.permutation(600)[:100].tolist(), [5, 5, 0, 599], [2], []):
        columns = _assert_same(reader, indices)
        kinds = _kinds(columns)
        assert kinds["a_text"] == kinds["c_blob"] == kinds["e_tag"] == "PackedList", indices
        assert kinds["b_id"] == kinds["d_x"] == "ndarray"
    # A run holding values of 256 bytes and more (4-byte lengths) among short ones.
    columns = _assert_same(reader, list(range(40, 100)))  # blobs 41 and 81: 255 B, 50: 300 B; tag 97: 353
    assert _kinds(columns)["c_blob"] == _kinds(columns)["e_tag"] == "PackedList"
    reader.close()


def test_packed_lists_join_into_one_pickle(write_mds: WriteFn) -> None:
    reader = _reader(write_mds, [_sample(i) for i in range(40)])
    parts = [reader.get_columns(list(range(0, 15))), reader.get_columns(list(range(15, 40)))]
    blobs = [p.values[2] for p in parts]
    assert all(isinstance(b, PackedList) for b in blobs)
    want = [s["c_blob"] for s in reader.get_many(list(range(40)))]
    assert pickle.loads(payload(blobs)) == want
    assert sum(len(b) for b in blobs) == 40
    reader.close()


def test_non_ascii_text_is_decoded_value_by_value(write_mds: WriteFn) -> None:
    samples = [_sample(i) for i in range(30)]
    samples[7]["a_text"] = "naïve ✓"
    reader = _reader(write_mds, samples)
    columns = _assert_same(reader, list(range(30)))
    kinds = _kinds(columns)
    assert kinds["a_text"] == kinds["c_blob"] == "list"
    assert _kinds(_assert_same(reader, list(range(8, 30))))["a_text"] == "PackedList"  # without sample 7
    reader.close()


def test_long_values_are_decoded_value_by_value(write_mds: WriteFn) -> None:
    samples = [{"a_text": "t", "c_blob": bytes(PACK_MEAN_MAX + 1 + i % 2)} for i in range(10)]
    reader = _reader(write_mds, samples, {"a_text": "str", "c_blob": "bytes"})
    assert _kinds(_assert_same(reader, list(range(10))))["c_blob"] == "list"
    reader.close()


@pytest.mark.parametrize("length", [1000, 2])
def test_corrupt_lengths_raise_the_per_sample_error(write_mds: WriteFn, length: int) -> None:
    root = write_mds(COLUMNS, [_sample(i) for i in range(6)], size_limit=None)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    path: Path = root / entry.raw_data.basename
    data = bytearray(path.read_bytes())
    begin = struct.unpack_from("<I", data, 4 + 4 * 3)[0]
    struct.pack_into("<I", data, begin, length)  # sample 3's text length: past its end, or short of it
    path.write_bytes(bytes(data))
    reader = MDSReader.open(path, entry)
    assert _kinds(_assert_same(reader, [0, 1, 2]))["a_text"] == "PackedList"
    with pytest.raises(FormatError, match="column lengths do not add up") as info:
        reader.get_columns([0, 3])
    assert "shard.00000.mds" in str(info.value)
    reader.close()


def test_runs_shorter_than_pack_min_rows_are_decoded_value_by_value(
    write_mds: WriteFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packing costs a fixed ~150 µs of numpy calls: a short run (what a shuffled walk reads) is cheaper
    value by value, with the same values."""
    monkeypatch.setattr(columns_module, "PACK_MIN_ROWS", PACK_MIN_ROWS)  # the default again
    reader = _reader(write_mds, [_sample(i) for i in range(PACK_MIN_ROWS + 10)])
    short = _assert_same(reader, list(range(PACK_MIN_ROWS - 1)))
    assert _kinds(short)["a_text"] == "list"
    assert _kinds(_assert_same(reader, list(range(PACK_MIN_ROWS))))["a_text"] == "PackedList"
