"""Hashes: the supported names, mosaic's sorted/unique rule, digests against golden and published values."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from astreaming.errors import ConfigError, HashMismatch
from astreaming.format.compression import get_compression
from astreaming.format.hashing import hash_bytes, hash_file, hash_names, validate_hashes, verify_hash

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "format" / "mds"


def _golden_all_hashes() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    expected = json.loads((GOLDEN / "all_hashes" / "expected.json").read_text())
    index = json.loads((GOLDEN / "all_hashes" / "data" / "index.json").read_text())
    return expected, index["shards"]


def test_hash_names_are_the_ones_mosaic_accepted() -> None:
    # The golden dataset was written with "every supported hash algorithm (sorted list)".
    expected, _ = _golden_all_hashes()
    assert hash_names() == expected["writer_kwargs"]["hashes"]
    assert len(hash_names()) == 17
    assert not any(name.startswith("shake_") for name in hash_names())
    assert {"xxh32", "xxh64", "xxh3_64", "xxh3_128", "xxh128"} <= set(hash_names())


@pytest.mark.parametrize("shard_number", [0, 1, 2])
def test_digests_match_mosaics_for_every_algorithm(shard_number: int) -> None:
    _, shards = _golden_all_hashes()
    shard = shards[shard_number]
    zip_path = GOLDEN / "all_hashes" / "data" / shard["zip_data"]["basename"]
    zipped = zip_path.read_bytes()
    comp = get_compression(shard["compression"])
    assert comp is not None
    raw = comp.decompress(zipped, expected_size=shard["raw_data"]["bytes"], name=str(zip_path))
    for algo in hash_names():
        assert hash_bytes(algo, raw) == shard["raw_data"]["hashes"][algo]
        assert hash_bytes(algo, memoryview(zipped)) == shard["zip_data"]["hashes"][algo]
        assert hash_file(algo, zip_path) == shard["zip_data"]["hashes"][algo]


# Published test vectors: xxHash's empty-input digests and FIPS 180 "abc".
@pytest.mark.parametrize(
    ("algo", "data", "digest"),
    [
        ("xxh32", b"", "02cc5d05"),
        ("xxh64", b"", "ef46db3751d8e999"),
        ("xxh3_64", b"", "2d06800538d394c2"),
        ("xxh3_128", b"", "99aa06d3014798d86001c324468d497f"),
        ("xxh128", b"", "99aa06d3014798d86001c324468d497f"),
        ("sha256", b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("md5", b"abc", "900150983cd24fb0d6963f7d28e17f72"),
    ],
)
def test_known_digests(algo: str, data: bytes, digest: str) -> None:
    assert hash_bytes(algo, data) == digest


def test_hash_file_streams_large_files(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * 4096 + 17)  # ~3 MiB: several read chunks, odd tail
    path = tmp_path / "f"
    path.write_bytes(data)
    for algo in ("sha1", "xxh64", "xxh3_128", "blake2b"):
        assert hash_file(algo, path) == hash_bytes(algo, data)
    assert hash_file("sha256", path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "algos", [None, [], ["sha1"], ["sha1", "xxh64"], ["md5", "sha256", "xxh128", "xxh3_64"]]
)
def test_valid_hash_lists(algos: list[str] | None) -> None:
    assert validate_hashes(algos) == (algos or [])


@pytest.mark.parametrize(
    ("algos", "match"),
    [
        (["xxh64", "sha1"], "sorted"),  # mosaic's own example
        (["sha1", "sha1"], "unique"),
        (["crc32"], "unsupported"),
        (["shake_128"], "unsupported"),
        (["sha1", "SHA256"], "unsupported"),
        ("sha1", "list"),
        ([1], "unsupported"),
    ],
)
def test_invalid_hash_lists_name_the_argument(algos: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        validate_hashes(algos)
    assert "hashes" in str(info.value)


def test_unknown_algorithm() -> None:
    with pytest.raises(ConfigError, match="'crc32'"):
        hash_bytes("crc32", b"")


def test_verify_hash(tmp_path: Path) -> None:
    data = b"shard bytes"
    path = tmp_path / "shard.00000.mds"
    path.write_bytes(data)
    good = hash_bytes("xxh64", data)
    verify_hash("xxh64", good, data=data, name="shard.00000.mds")
    verify_hash("xxh64", good, path=path, name="shard.00000.mds")
    verify_hash("xxh64", good.upper(), data=data, name="shard.00000.mds")
    for kwargs in ({"data": data + b"!"}, {"path": tmp_path / "other"}):
        (tmp_path / "other").write_bytes(b"other")
        with pytest.raises(HashMismatch, match=r"shard\.00000\.mds.*xxh64") as info:
            verify_hash("xxh64", good, name="shard.00000.mds", **kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError):
        verify_hash("xxh64", good, name="x")
    with pytest.raises(ConfigError):
        verify_hash("xxh64", good, data=data, path=path, name="x")
