"""``MDSReader.get_run``: a run of samples lying together is read with one ``pread`` of its bytes and decoded
from that copy, the same samples ``get_many`` decodes from the mapping; anything else reads the mapping."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mds_samples import COLUMNS, assert_same_sample, sample
from preads import spy_preads

from astreaming.errors import FormatError
from astreaming.format.index import MDSEntry, load_index
from astreaming.format.mds.reader import SPAN_READ_MIN, MDSReader
from astreaming.format.reader import open_shard

from .conftest import WriteFn

#: Every encoding, and a blob making each sample large enough for runs to be read by span.
BIG = {**COLUMNS, "pad": "bytes"}
PAD = SPAN_READ_MIN // 4  # 16 KB: four samples reach it


def _big(i: int) -> dict[str, Any]:
    return {**sample(i), "pad": bytes([i % 251]) * (PAD + i)}


def _same(got: dict[str, Any], i: int) -> None:
    """``got`` holds the values written as sample ``i`` (decoded arrays are read-only, written ones not)."""
    want = _big(i)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert (got[key].dtype, got[key].shape) == (value.dtype, value.shape), key
            assert got[key].tobytes() == value.tobytes(), key
        else:
            assert got[key] == value, key


def _shard(write_mds: WriteFn, n: int = 40) -> tuple[Path, MDSEntry]:
    root = write_mds(BIG, [_big(i) for i in range(n)], size_limit=None)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    return root / entry.raw_data.basename, entry


@pytest.mark.parametrize(
    "indices",
    [
        list(range(3, 35)),  # a walk's run in file order
        [9, 4, 8, 5, 7, 6],  # the same span, shuffled within it
        [10, 10, 11, 12, 13, 11, 13],  # repeats (an upsampled stream) within the span
    ],
    ids=["in-order", "shuffled-in-span", "repeats"],
)
def test_a_run_is_read_by_span_and_decodes_as_get_many(
    write_mds: WriteFn, monkeypatch: pytest.MonkeyPatch, indices: list[int]
) -> None:
    path, entry = _shard(write_mds)
    with MDSReader.open(path, entry) as reader:
        want = reader.get_many(indices)
        preads = spy_preads(monkeypatch)
        got = reader.get_run(indices)
        assert len(preads) == 1, "the run was not read by span"
        low, high = min(indices), max(indices)
        assert preads[0] == int(reader.offsets[high + 1]) - int(reader.offsets[low])
    assert len(got) == len(indices)
    for i, one, other in zip(indices, got, want, strict=True):
        assert_same_sample(one, other)
        _same(one, i)


@pytest.mark.parametrize(
    "indices",
    [[0, 20, 39], [5], [], [3, 4, 5]],
    ids=["spread-over-the-shard", "one-sample", "none", "under-the-minimum"],
)
def test_other_runs_read_the_mapping(
    write_mds: WriteFn, monkeypatch: pytest.MonkeyPatch, indices: list[int]
) -> None:
    path, entry = _shard(write_mds)
    with MDSReader.open(path, entry) as reader:
        if len(indices) == 3:  # three samples span less than SPAN_READ_MIN
            assert int(reader.offsets[6]) - int(reader.offsets[3]) < SPAN_READ_MIN
        preads = spy_preads(monkeypatch)
        got = reader.get_run(indices)
        assert preads == []
    for i, one in zip(indices, got, strict=True):
        _same(one, i)


def test_small_samples_are_read_through_the_mapping(
    write_mds: WriteFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_mds(COLUMNS, [sample(i) for i in range(200)], size_limit=None)
    (entry,) = load_index(root / "index.json")
    reader = open_shard(root, entry)
    preads = spy_preads(monkeypatch)
    got = reader.get_run(list(range(200)))  # type: ignore[attr-defined]
    assert preads == []
    want = reader.get_many(list(range(200)))  # type: ignore[attr-defined]
    for one, other in zip(got, want, strict=True):
        assert_same_sample(one, other)
    reader.close()


def test_a_replaced_file_is_not_read_by_path(write_mds: WriteFn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evicted and downloaded again (or rewritten): another inode at the path. The reader's samples stay
    those of the file it mapped."""
    path, entry = _shard(write_mds)
    reader = open_shard(path.parent, entry)
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data.replace(bytes([7]) * PAD, bytes([8]) * PAD))  # same size, other pad bytes
    preads = spy_preads(monkeypatch)
    got = reader.get_run(list(range(0, 20)))  # type: ignore[attr-defined]
    assert preads == []
    assert got[7]["pad"] == bytes([7]) * (PAD + 7)
    path.unlink()  # gone altogether: the mapping still serves
    assert reader.get_run(list(range(20, 40)))[0]["pad"] == bytes([20]) * (PAD + 20)  # type: ignore[attr-defined]
    reader.close()


def test_a_file_truncated_under_the_reader_names_it(write_mds: WriteFn) -> None:
    """The same inode cut short (not something a cache does): a clear error naming the file, where a
    read through the mapping would have killed the process with SIGBUS."""
    path, entry = _shard(write_mds)
    with MDSReader.open(path, entry) as reader:
        half = int(reader.offsets[20])
        os.truncate(path, half)
        assert [s["id"] for s in reader.get_run(list(range(2, 18)))] == list(range(2, 18))
        with pytest.raises(FormatError, match=rf"{path.name}.*truncated"):
            reader.get_run(list(range(15, 30)))
