"""Large MDS samples are read with ``os.pread``, not through the mapping: the same samples and the same
errors as the mapped reader, and none of the file's pages resident in the process (issue 12: the pages a
walk maps count in its resident set until they are given back)."""

from __future__ import annotations

import os
import random
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming.errors import FormatError
from astreaming.format.index import MDSEntry, load_index
from astreaming.format.mds import reader as mds_reader
from astreaming.format.mds.reader import MDSReader
from astreaming.format.reader import open_shard

from .conftest import WriteFn

COLUMNS = {"id": "int", "name": "str", "blob": "bytes", "arr": "ndarray:int16"}
SAMPLES = 120


def _sample(i: int) -> dict[str, Any]:
    # 5-70 KB: runs of them cross PREAD_BYTES at varying points; one sample is larger than it.
    size = 300_000 if i == 77 else 5_000 + (i * 7919) % 65_000
    return {
        "id": i - 60,
        "name": f"sample-{i}-é",
        "blob": bytes([i % 251]) * size,
        "arr": np.arange(1 + i % 9, dtype=np.int16),
    }


def _shard(write_mds: WriteFn, samples: list[dict[str, Any]] | None = None) -> tuple[Path, MDSEntry]:
    root = write_mds(COLUMNS, samples or [_sample(i) for i in range(SAMPLES)], size_limit=None)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    return root / entry.raw_data.basename, entry


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert list(a) == list(b)
        assert a["id"] == b["id"] and type(a["id"]) is int
        assert a["name"] == b["name"] and a["blob"] == b["blob"] and type(a["blob"]) is bytes
        assert a["arr"].dtype == b["arr"].dtype and a["arr"].tolist() == b["arr"].tolist()


def _resident(path: Path) -> int:
    """Resident bytes of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if "-" in head[0] and not head[0].endswith(":"):
                inside = len(head) == 6 and head[5].strip() == str(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def test_large_samples_read_by_pread_match_the_mapped_reader(write_mds: WriteFn) -> None:
    path, entry = _shard(write_mds)
    assert mds_reader.read_by_pread(entry)
    held = MDSReader.from_bytes(path.read_bytes(), entry, source=str(path))
    rng = random.Random(5)
    shuffled = list(range(SAMPLES))
    rng.shuffle(shuffled)
    picks = [
        list(range(SAMPLES)),  # one sequential epoch: runs cut at PREAD_BYTES, sample 77 alone
        list(range(70, 85)),
        shuffled,
        [3, 3, 4, 2, 119, 0, 1, 2],  # repeats, a step back, the last sample
        [],
    ]
    for opened in (MDSReader.open(path, entry), open_shard(path.parent, entry)):
        assert isinstance(opened, MDSReader)
        with opened as reader:
            assert reader._fd is not None
            for indices in picks:
                _same(reader.get_many(indices), held.get_many(indices))
            _same(reader.get_many(iter(range(10))), held.get_many(range(10)))  # any iterable
            _same([reader[5], reader.get_item(6)], [held[5], held[6]])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_reading_large_samples_maps_none_of_the_file_in(write_mds: WriteFn) -> None:
    path, entry = _shard(write_mds)
    with MDSReader.open(path, entry) as reader:
        assert _resident(path) == 0  # the header was read through the mapping, then given back
        assert len(reader.get_many(list(range(SAMPLES)))) == SAMPLES
        assert _resident(path) == 0
        reader.get_item(3)  # random access still reads the mapping
        assert _resident(path) > 0


def test_small_samples_stay_mapped(write_mds: WriteFn) -> None:
    samples = [{"id": i, "name": "x", "blob": b"y" * 100, "arr": np.zeros(2, np.int16)} for i in range(50)]
    path, entry = _shard(write_mds, samples)
    assert not mds_reader.read_by_pread(entry)
    with MDSReader.open(path, entry) as reader:
        assert reader._fd is None
        assert [s["id"] for s in reader.get_many([1, 2, 3])] == [1, 2, 3]


def test_close_closes_the_descriptor(write_mds: WriteFn) -> None:
    path, entry = _shard(write_mds)
    reader = MDSReader.open(path, entry)
    fd = reader._fd
    assert fd is not None
    os.fstat(fd)
    reader.close()
    assert reader._fd is None
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(IndexError, match="closed"):
        reader.get_many([0])


def test_errors_are_the_mapped_readers(write_mds: WriteFn) -> None:
    path, entry = _shard(write_mds)
    data = bytearray(path.read_bytes())
    offsets = np.frombuffer(bytes(data), "<u4", SAMPLES + 1, 4)
    # Sample 50's name length word claims more bytes than the sample has: its columns do not add up.
    begin = int(offsets[50])
    struct.pack_into("<I", data, begin, 10**6)
    path.write_bytes(bytes(data))
    held = MDSReader.from_bytes(bytes(data), entry, source=str(path))
    with MDSReader.open(path, entry) as reader:
        assert reader._fd is not None
        for indices in ([48, 49, 50, 51], [50], list(range(SAMPLES)), [3, 200], [-1], [0, SAMPLES]):
            with pytest.raises((FormatError, IndexError)) as expected:
                held.get_many(indices)
            with pytest.raises(type(expected.value), match="^" + _escaped(str(expected.value)) + "$"):
                reader.get_many(indices)
        _same(reader.get_many([47, 48, 49]), held.get_many([47, 48, 49]))  # the rest still reads


def test_a_file_cut_short_while_open_is_a_format_error(write_mds: WriteFn) -> None:
    """Read through the mapping, a page past the new end would kill the process (SIGBUS)."""
    path, entry = _shard(write_mds)
    with MDSReader.open(path, entry) as reader:
        os.truncate(path, entry.raw_data.bytes // 2)
        with pytest.raises(FormatError, match="the file changed while open") as info:
            reader.get_many(list(range(SAMPLES)))
        assert str(path) in str(info.value)


def _escaped(text: str) -> str:
    import re

    return re.escape(text)
