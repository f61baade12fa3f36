"""Hostile or broken datasets get a typed error naming the file, through the public API (issue 10)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from astreaming import StreamingDataset
from astreaming.errors import FormatError, HashMismatch, StorageError
from astreaming.format.compression import get_compression

from .conftest import MakeDataset, read_index


def test_deeply_nested_index_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("[" * 100_000)
    with pytest.raises(FormatError, match="nested too deeply") as info:
        StreamingDataset(local=str(tmp_path), batch_size=1)
    assert str(tmp_path / "index.json") in str(info.value)


def test_deeply_nested_value_inside_an_entry_is_a_format_error(make_dataset: MakeDataset) -> None:
    root = make_dataset()
    text = (root / "index.json").read_text().replace('"hashes": []', '"hashes": ' + "[" * 50_000, 1)
    (root / "index.json").write_text(text)
    with pytest.raises(FormatError, match=r"index\.json"):
        StreamingDataset(local=str(root), batch_size=1)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("samples",), 2**64 + 5),
        (("samples",), 2**63),
        (("raw_data", "bytes"), 2**70),
        (("size_limit",), 10**30),
        (("column_sizes",), [2**64, None]),
    ],
)
def test_huge_integers_in_the_index_are_format_errors(
    make_dataset: MakeDataset, path: tuple[str, ...], value: object
) -> None:
    root = make_dataset()
    index = read_index(root)
    target = index["shards"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(FormatError, match=f"shard 0: .*key '{path[-1]}'"):
        StreamingDataset(local=str(root), batch_size=1)


def test_sample_counts_overflowing_together_are_a_format_error(make_dataset: MakeDataset) -> None:
    root = make_dataset()
    index = read_index(root)
    for shard in index["shards"][:2]:
        shard["samples"] = 2**62 + 1  # each fits in int64, their sum does not
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(FormatError, match="add up to more than"):
        StreamingDataset(local=str(root), batch_size=1)


def _first_basename(root: Path, key: str = "raw_data") -> str:
    basename: str = read_index(root)["shards"][0][key]["basename"]
    return basename


def _replace_with_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_bytes(b"not a shard")


def test_shard_that_is_a_directory_local_only(make_dataset: MakeDataset) -> None:
    root = make_dataset()
    shard = root / _first_basename(root)
    _replace_with_directory(shard)
    ds = StreamingDataset(local=str(root), batch_size=1)
    with pytest.raises(FormatError, match="is a directory") as info:
        list(ds)
    assert str(shard) in str(info.value)
    with pytest.raises(FormatError, match="is a directory"):
        ds[0]


def test_compressed_shard_that_is_a_directory_local_only(make_dataset: MakeDataset) -> None:
    root = make_dataset(compression="zstd")
    zipped = root / _first_basename(root, "zip_data")
    _replace_with_directory(zipped)
    with pytest.raises(FormatError, match="is a directory") as info:
        list(StreamingDataset(local=str(root), batch_size=1))
    assert str(zipped) in str(info.value)


def test_shard_that_is_a_directory_on_the_remote(make_dataset: MakeDataset, tmp_path: Path) -> None:
    root = make_dataset()
    _replace_with_directory(root / _first_basename(root))
    ds = StreamingDataset(remote=str(root), local=str(tmp_path / "cache"), batch_size=1)
    with pytest.raises(StorageError, match=r"shard\.00000\.mds"):
        list(ds)


def test_shard_that_is_a_fifo_does_not_hang(make_dataset: MakeDataset) -> None:
    root = make_dataset()
    shard = root / _first_basename(root)
    shard.unlink()
    os.mkfifo(shard)  # opening a FIFO for reading blocks until a writer comes: must not be opened so
    with pytest.raises(FormatError, match="not a regular file"):
        list(StreamingDataset(local=str(root), batch_size=1))


def _tamper_compressed(root: Path) -> None:
    """Rewrite shard 0's zstd file as valid zstd of different bytes of the same raw size."""
    entry = read_index(root)["shards"][0]
    codec = get_compression(entry["compression"])
    assert codec is not None
    zipped = root / entry["zip_data"]["basename"]
    raw = bytearray(codec.decompress(zipped.read_bytes(), expected_size=None, name="x"))
    # The last sample's id (an int64 before its string column) is the last 8 + len(pad) + 4 bytes' head;
    # flipping every byte of the tail changes decoded values without changing the size.
    raw[-1] ^= 0x01
    raw[-12] ^= 0x01
    zipped.write_bytes(codec.compress(bytes(raw)))


def test_validate_hash_checks_a_compressed_shard_already_present(make_dataset: MakeDataset) -> None:
    root = make_dataset(compression="zstd", hashes=["sha1", "xxh64"])
    _tamper_compressed(root)
    # Without validate_hash the tampered (but well-formed) file is read: the corruption is silent...
    ids = [s["id"] for s in StreamingDataset(local=str(root), batch_size=1)]
    padded = [s["pad"] for s in StreamingDataset(local=str(root), batch_size=1)]
    assert (ids, padded) != (list(range(60)), ["x" * (i % 7) for i in range(60)])
    # ... with it, the index's digest is checked before the file is decompressed.
    for raw in root.glob("*.mds"):
        raw.unlink()  # the decompressed copy of the first run
    with pytest.raises(HashMismatch, match=r"shard\.00000\.mds\.zstd"):
        list(StreamingDataset(local=str(root), batch_size=1, validate_hash="xxh64"))
    assert not list(root.glob("shard.00000.mds")), "nothing decompressed from the untrusted file"
