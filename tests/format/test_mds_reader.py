"""MDS reader: validation of the shard layout, unsafe types, partial reads, no per-sample syscalls."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming.errors import ConfigError, FormatError, HashMismatch
from astreaming.format.compression import get_compression
from astreaming.format.index import MDSEntry, load_index
from astreaming.format.mds.reader import MDSReader, build_decoder, mds_header_size, parse_mds_header
from astreaming.format.reader import open_shard, verify_file

from .conftest import WriteFn

COLUMNS = {"id": "int", "name": "str", "blob": "bytes", "arr": "ndarray:int16"}


def _samples(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"n{i}" * (i % 3),
            "blob": bytes(range(i % 7)),
            "arr": np.arange(i + 1, dtype=np.int16),
        }
        for i in range(n)
    ]


def _one_shard(write_mds: WriteFn, n: int = 6, **kwargs: Any) -> tuple[Path, MDSEntry]:
    root = write_mds(COLUMNS, _samples(n), size_limit=None, **kwargs)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    return root, entry


def _check(sample: dict[str, Any], i: int) -> None:
    assert sample["id"] == i and type(sample["id"]) is int
    assert sample["name"] == f"n{i}" * (i % 3)
    assert sample["blob"] == bytes(range(i % 7))
    assert sample["arr"].tolist() == list(range(i + 1)) and not sample["arr"].flags.writeable


def test_reads_every_sample_and_bytes(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds)
    with MDSReader.open(root / entry.raw_data.basename, entry) as reader:
        assert len(reader) == reader.samples == 6
        for i in range(6):
            _check(reader[i], i)
        _check(reader[-1], 5)
        assert reader.offsets.dtype == np.dtype("<u4") and len(reader.offsets) == 7
        assert (
            reader.get_bytes(2)
            == (root / entry.raw_data.basename).read_bytes()[int(reader.offsets[2]) : int(reader.offsets[3])]
        )
        for bad in (6, -7):
            with pytest.raises(IndexError):
                reader[bad]
        with pytest.raises(IndexError):
            reader.get_bytes(6)


def test_cached_reads_make_no_syscalls(write_mds: WriteFn, monkeypatch: pytest.MonkeyPatch) -> None:
    root, entry = _one_shard(write_mds, n=50)
    reader = MDSReader.open(root / entry.raw_data.basename, entry)
    (root / entry.raw_data.basename).unlink()  # the mapping outlives the name

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("file I/O on the per-sample path")

    for name in ("open", "read", "pread", "lseek", "fstat", "stat"):
        monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    for i in range(50):
        _check(reader[i], i)
    monkeypatch.undo()
    reader.close()


def test_from_bytes_and_header_helpers_decode_byte_ranges(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds)
    data = (root / entry.raw_data.basename).read_bytes()
    reader = MDSReader.from_bytes(data, entry, source="mem")
    _check(reader[3], 3)
    # An engine that fetched only the header prefix and one sample's range can decode it.
    need = mds_header_size(data[:4])
    assert need == 4 + 4 * 7
    offsets = parse_mds_header(data[:need], source="remote", samples=6)
    plan = build_decoder(entry.column_names, entry.column_encodings, entry.column_sizes, source="remote")
    blob = data[int(offsets[4]) : int(offsets[5])]
    _check(plan.decode(blob, 0, len(blob)), 4)
    with pytest.raises(FormatError, match="remote: corrupt MDS sample"):
        plan.decode(blob + b"x", 0, len(blob) + 1)
    with pytest.raises(FormatError, match="remote: truncated"):
        mds_header_size(b"\x01", source="remote")
    with pytest.raises(FormatError, match="index says 5"):
        parse_mds_header(data[:need], source="remote", samples=5)


def test_zero_sample_shard(write_mds: WriteFn) -> None:
    # size_limit=40 is below the header size: the first shard has 0 samples (reference §1.8).
    root = write_mds({"x": "bytes"}, [{"x": b"abc"}, {"x": b"de"}], size_limit=40)
    entries = load_index(root / "index.json")
    assert [e.samples for e in entries] == [0, 1, 1]
    reader = open_shard(root, entries[0])
    assert len(reader) == 0
    with pytest.raises(IndexError):
        reader[0]
    assert open_shard(root, entries[2])[0] == {"x": b"de"}


def _rewrite(root: Path, entry: MDSEntry, data: bytes, *, fix_size: bool = True) -> MDSEntry:
    (root / entry.raw_data.basename).write_bytes(data)
    if fix_size:
        return dataclasses.replace(entry, raw_data=dataclasses.replace(entry.raw_data, bytes=len(data)))
    return entry


def test_truncated_shard_names_the_file(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds)
    data = (root / entry.raw_data.basename).read_bytes()
    path = str(root / entry.raw_data.basename)
    stale = _rewrite(root, entry, data[:-5], fix_size=False)
    with pytest.raises(FormatError, match=r"file has .* bytes but the index says") as info:
        open_shard(root, stale)
    assert path in str(info.value)
    fixed = _rewrite(root, entry, data[:-5])
    with pytest.raises(FormatError, match="offsets point past the end of the file") as info:
        open_shard(root, fixed)
    assert path in str(info.value)
    for cut in (0, 3, 12):
        with pytest.raises(FormatError, match="truncated") as info:
            open_shard(root, _rewrite(root, entry, data[:cut]))
        assert path in str(info.value)


@pytest.mark.parametrize(
    ("slot", "value", "match"),
    [
        (6, 10**6, "offsets point past the end"),
        (3, 0, "not increasing"),
        (0, 8, "inside the header"),
    ],
)
def test_bad_offsets(write_mds: WriteFn, slot: int, value: int, match: str) -> None:
    root, entry = _one_shard(write_mds)
    data = bytearray((root / entry.raw_data.basename).read_bytes())
    struct.pack_into("<I", data, 4 + 4 * slot, value)
    with pytest.raises(FormatError, match=match) as info:
        open_shard(root, _rewrite(root, entry, bytes(data)))
    assert entry.raw_data.basename in str(info.value)


def test_sample_count_must_match_index(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds)
    with pytest.raises(FormatError, match="shard holds 6 samples but the index says 7"):
        open_shard(root, dataclasses.replace(entry, samples=7))


def test_corrupt_length_word_is_detected_not_decoded(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds)
    data = bytearray((root / entry.raw_data.basename).read_bytes())
    (first,) = struct.unpack_from("<I", data, 4 + 4 * 2)
    struct.pack_into("<I", data, first, 1000)  # sample 2's first variable length
    reader = open_shard(root, _rewrite(root, entry, bytes(data)))
    _check(reader[1], 1)
    with pytest.raises(FormatError, match="column lengths do not add up") as info:
        reader[2]
    assert entry.raw_data.basename in str(info.value)


def test_pkl_needs_opt_in_before_any_read(write_mds: WriteFn) -> None:
    root = write_mds({"p": "pkl", "x": "int"}, [{"p": {"a": (1, 2)}, "x": 1}])
    (entry,) = load_index(root / "index.json")
    (root / entry.raw_data.basename).unlink()  # proves the check happens before the file is touched
    with pytest.raises(ConfigError, match=r"column 'p'.*allow_unsafe_types=True"):
        open_shard(root, entry)
    with pytest.raises(ConfigError, match="allow_unsafe_types"):
        MDSReader.open(root / entry.raw_data.basename, entry)  # type: ignore[arg-type]
    root2 = write_mds({"p": "pkl", "x": "int"}, [{"p": {"a": (1, 2)}, "x": 1}])
    (entry2,) = load_index(root2 / "index.json")
    assert open_shard(root2, entry2, allow_unsafe_types=True)[0] == {"p": {"a": (1, 2)}, "x": 1}


def test_unknown_encoding_and_inconsistent_size_name_the_file(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds)
    bad = dataclasses.replace(entry, column_encodings=("ndarray:int16", "bytes", "int", "float128"))
    with pytest.raises(FormatError, match=r"shard\.00000\.mds: column 'name'.*float128"):
        open_shard(root, bad)
    bad = dataclasses.replace(entry, column_sizes=(None, None, 4, None))
    with pytest.raises(FormatError, match=r"shard\.00000\.mds: column 'id'.*size 8, index says 4"):
        open_shard(root, bad)


def test_compressed_only_shard_is_decompressed_with_bomb_guard(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds, compression="zstd", hashes=["sha1", "xxh64"])
    assert entry.zip_data is not None
    assert not (root / entry.raw_data.basename).exists() and (root / entry.zip_data.basename).exists()
    _check(open_shard(root, entry)[5], 5)
    # The index claims a smaller raw size than the payload decompresses to: refused, file named.
    lying = dataclasses.replace(entry, raw_data=dataclasses.replace(entry.raw_data, bytes=100))
    with pytest.raises(FormatError) as info:
        open_shard(root, lying)
    assert entry.zip_data.basename in str(info.value)
    verify_file(root, entry.zip_data, "xxh64")
    codec = get_compression("zstd")
    assert codec is not None
    (root / entry.zip_data.basename).write_bytes(codec.compress(b"x" * 10))
    with pytest.raises(HashMismatch) as hinfo:
        verify_file(root, entry.zip_data, "sha1")
    assert entry.zip_data.basename in str(hinfo.value)
    with pytest.raises(FormatError, match="records no 'md5' hash"):
        verify_file(root, entry.zip_data, "md5")


def test_header_embeds_sorted_config(write_mds: WriteFn) -> None:
    root, entry = _one_shard(write_mds, hashes=["sha1"])
    data = (root / entry.raw_data.basename).read_bytes()
    num = struct.unpack_from("<I", data)[0]
    first = struct.unpack_from("<I", data, 4)[0]
    config = data[4 + 4 * (num + 1) : first].decode()
    assert config == json.dumps(
        {
            "column_encodings": ["ndarray:int16", "bytes", "int", "str"],
            "column_names": ["arr", "blob", "id", "name"],
            "column_sizes": [None, None, 8, None],
            "compression": None,
            "format": "mds",
            "hashes": ["sha1"],
            "size_limit": None,
            "version": 2,
        },
        sort_keys=True,
    )


def test_mapped_shard_reads_a_small_offsets_table_from_a_copy(write_mds: WriteFn) -> None:
    """A mapped shard whose offsets table is a small share of the file reads it from a private copy
    (each sample's lookup would keep the head of the file mapped: a 2 MB folio), with the same samples
    by every decoding path as a reader over the bytes."""
    samples = [
        {"id": i, "name": f"n{i}", "blob": bytes([i % 251]) * 1000, "arr": np.arange(3, dtype=np.int16)}
        for i in range(200)
    ]
    root = write_mds(COLUMNS, samples, size_limit=None)
    (entry,) = load_index(root / "index.json")
    assert isinstance(entry, MDSEntry)
    path = root / entry.raw_data.basename
    with (
        MDSReader.open(path, entry) as mapped,
        MDSReader.from_bytes(path.read_bytes(), entry, source=str(path)) as held,
    ):
        assert isinstance(mapped._offs, memoryview) and type(mapped._offs.obj) is bytes
        assert isinstance(held._offs, memoryview) and type(held._offs.obj) is bytes  # bytes: a view
        picks = [0, 7, 199, 100, 3]
        assert [mapped.get_bytes(i) for i in picks] == [held.get_bytes(i) for i in picks]
        for a, b in zip(mapped.get_many(picks), held.get_many(picks), strict=True):
            assert a["id"] == b["id"] and a["blob"] == b["blob"] and a["name"] == b["name"]
        columns = [_plain(c.values) for c in (mapped.get_columns(picks), held.get_columns(picks))]
        assert columns[0] == columns[1] and picks in columns[0]
    few = write_mds(COLUMNS, _samples(6), size_limit=None)  # tiny samples: the table stays mapped
    (entry,) = load_index(few / "index.json")
    assert isinstance(entry, MDSEntry)
    with MDSReader.open(few / entry.raw_data.basename, entry) as small:
        assert type(small._offs.obj).__name__ == "mmap"  # type: ignore[attr-defined]


def _plain(values: Any) -> list[Any]:
    """Columns' values as plain lists (arrays listed) to compare."""
    return [
        v.tolist()
        if isinstance(v, np.ndarray)
        else [x.tolist() if isinstance(x, np.ndarray) else x for x in v]
        for v in values
    ]
