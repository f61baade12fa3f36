"""Compression: spec parsing, byte identity with mosaic's golden shards, round trips, the size guard."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import brotli
import cramjam
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError, FormatError
from astreaming.format.compression import Compression, compression_names, get_compression

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "format" / "mds"
GOLDEN_SETS = ("comp_zstd", "comp_zstd7", "comp_bz2", "comp_br", "comp_snappy", "comp_gz", "all_hashes")
FAMILIES = {"zstd": ".zstd", "gz": ".gz", "bz2": ".bz2", "br": ".br", "snappy": ".snappy"}


def _golden_shards() -> list[tuple[str, dict[str, Any]]]:
    shards = []
    for name in GOLDEN_SETS:
        index = json.loads((GOLDEN / name / "data" / "index.json").read_text())
        shards.extend((name, shard) for shard in index["shards"])
    return shards


def _raw_of(name: str, shard: dict[str, Any]) -> tuple[bytes, bytes]:
    zipped = (GOLDEN / name / "data" / shard["zip_data"]["basename"]).read_bytes()
    comp = get_compression(shard["compression"])
    assert comp is not None
    raw = comp.decompress(zipped, expected_size=shard["raw_data"]["bytes"], name="golden")
    return zipped, raw


@pytest.mark.parametrize(("name", "shard"), _golden_shards())
def test_golden_shards_decompress_and_recompress_identically(
    name: str, shard: dict[str, Any], tmp_path: Path
) -> None:
    comp = get_compression(shard["compression"])
    assert comp is not None
    assert shard["zip_data"]["basename"] == shard["raw_data"]["basename"] + comp.extension
    zipped, raw = _raw_of(name, shard)
    assert len(raw) == shard["raw_data"]["bytes"]
    assert hashlib.sha1(raw).hexdigest() == shard["raw_data"]["hashes"]["sha1"]
    # The streaming file path gives the same bytes.
    dst = tmp_path / "raw"
    comp.decompress_file(GOLDEN / name / "data" / shard["zip_data"]["basename"], dst, expected_size=len(raw))
    assert dst.read_bytes() == raw
    if comp.family == "gz":
        # gzip embeds a timestamp: mosaic's bytes cannot be reproduced; ours are deterministic.
        assert gzip.decompress(comp.compress(raw)) == raw
        assert comp.compress(raw) == comp.compress(raw)
    else:
        assert comp.compress(raw) == zipped


def test_compression_names_are_every_family_and_level() -> None:
    expected = {"zstd", "gz", "bz2", "br", "snappy"}
    expected |= {f"zstd:{n}" for n in range(1, 23)}
    expected |= {f"gz:{n}" for n in range(0, 10)}
    expected |= {f"bz2:{n}" for n in range(1, 10)}
    expected |= {f"br:{n}" for n in range(0, 12)}
    names = compression_names()
    assert set(names) == expected and len(names) == len(expected)
    for name in names:
        assert get_compression(name) is not None


@pytest.mark.parametrize(
    ("spec", "family", "level", "extension"),
    [
        ("zstd", "zstd", None, ".zstd"),
        ("zstd:7", "zstd", 7, ".zstd"),
        ("gz:0", "gz", 0, ".gz"),
        ("bz2", "bz2", None, ".bz2"),
        ("br:11", "br", 11, ".br"),
        ("snappy", "snappy", None, ".snappy"),
    ],
)
def test_attributes(spec: str, family: str, level: int | None, extension: str) -> None:
    comp = get_compression(spec)
    assert isinstance(comp, Compression)
    assert (comp.spec, comp.family, comp.level, comp.extension) == (spec, family, level, extension)


def test_none_is_no_compression() -> None:
    assert get_compression(None) is None


@pytest.mark.parametrize(
    "spec",
    ["lz4", "ZSTD", "zstd:0", "zstd:23", "zstd:-1", "zstd:", "zstd:3.0", "zstd: 3", "gz:10", "bz2:0", "br:12",
     "snappy:1", "", ":3", "zstd:3:1", 3, b"zstd"],
)  # fmt: skip
def test_bad_specs_name_the_argument_and_the_families(spec: Any) -> None:
    with pytest.raises(ConfigError, match="compression") as info:
        get_compression(spec)
    if isinstance(spec, str):
        assert repr(spec) in str(info.value)
        assert all(family in str(info.value) for family in FAMILIES)


SAMPLE = b"".join(b"sample %d with some repeated text; " % i for i in range(2000))


@pytest.mark.parametrize(
    ("bare", "explicit", "reference"),
    [
        ("zstd", "zstd:3", lambda d: zstandard.ZstdCompressor(level=3).compress(d)),
        ("bz2", "bz2:9", lambda d: bz2.compress(d, 9)),
        ("br", "br:11", lambda d: brotli.compress(d, quality=11)),
        ("gz", "gz:9", lambda d: gzip.compress(d, 9, mtime=0)),
        ("snappy", "snappy", lambda d: bytes(cramjam.snappy.compress_raw(d))),
    ],
)
def test_default_levels(bare: str, explicit: str, reference: Any) -> None:
    a, b = get_compression(bare), get_compression(explicit)
    assert a is not None and b is not None
    assert a.compress(SAMPLE) == b.compress(SAMPLE) == reference(SAMPLE)


def test_levels_change_the_output() -> None:
    outputs = {get_compression(f"zstd:{n}").compress(SAMPLE) for n in (1, 19)}  # type: ignore[union-attr]
    assert len(outputs) == 2


def test_outputs_are_standard_formats() -> None:
    assert get_compression("zstd").compress(SAMPLE)[:4] == b"\x28\xb5\x2f\xfd"  # type: ignore[union-attr]
    assert zstandard.ZstdDecompressor().decompress(get_compression("zstd:22").compress(SAMPLE)) == SAMPLE  # type: ignore[union-attr]
    # Raw snappy block (varint length first), not the framed format.
    snappy = get_compression("snappy").compress(SAMPLE)  # type: ignore[union-attr]
    assert bytes(cramjam.snappy.decompress_raw(snappy)) == SAMPLE
    assert not snappy.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert gzip.decompress(get_compression("gz:1").compress(SAMPLE)) == SAMPLE  # type: ignore[union-attr]
    assert brotli.decompress(get_compression("br:0").compress(SAMPLE)) == SAMPLE  # type: ignore[union-attr]


@settings(max_examples=15, deadline=None)
@given(
    data=st.binary(max_size=5000), spec=st.sampled_from(["zstd:1", "gz:1", "bz2:1", "br:1", "snappy", "zstd"])
)
def test_round_trip(data: bytes, spec: str) -> None:
    comp = get_compression(spec)
    assert comp is not None
    packed = comp.compress(data)
    assert comp.decompress(packed, expected_size=len(data), name="f") == data
    assert comp.decompress(packed, expected_size=None, name="f") == data


@pytest.mark.parametrize("spec", ["zstd", "gz", "bz2", "br", "snappy"])
def test_round_trip_through_files_larger_than_a_chunk(spec: str, tmp_path: Path) -> None:
    comp = get_compression(spec)
    assert comp is not None
    data = SAMPLE * 60  # ~4 MiB: several 1 MiB streaming chunks
    src, dst = tmp_path / f"shard{comp.extension}", tmp_path / "shard"
    src.write_bytes(comp.compress(data))
    comp.decompress_file(src, dst, expected_size=len(data))
    assert dst.read_bytes() == data
    comp.decompress_file(src, dst, expected_size=None)
    assert dst.read_bytes() == data


def test_concatenated_members_and_frames_decode() -> None:
    a, b = SAMPLE[:1000], SAMPLE[1000:3000]
    cases = {
        "gz": gzip.compress(a) + gzip.compress(b),
        "bz2": bz2.compress(a) + bz2.compress(b),
        "zstd": zstandard.ZstdCompressor().compress(a) + zstandard.ZstdCompressor().compress(b),
    }
    for spec, packed in cases.items():
        comp = get_compression(spec)
        assert comp is not None
        assert comp.decompress(packed, expected_size=3000, name="f") == a + b


def test_zstd_frame_without_content_size() -> None:
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(SAMPLE)
    packed = out.getvalue()
    assert zstandard.frame_content_size(packed) == -1  # unknown
    comp = get_compression("zstd")
    assert comp is not None
    assert comp.decompress(packed, expected_size=len(SAMPLE), name="f") == SAMPLE
    with pytest.raises(FormatError, match="more than the 100 bytes"):
        comp.decompress(packed, expected_size=100, name="f")


BOMB_SIZE = 32 << 20  # 32 MiB of zeros


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    zeros = bytes(BOMB_SIZE)
    return {
        "zstd": zstandard.ZstdCompressor(level=1).compress(zeros),
        "gz": gzip.compress(zeros, 1),
        "bz2": bz2.compress(zeros, 1),
        "br": brotli.compress(zeros, quality=1),
        "snappy": bytes(cramjam.snappy.compress_raw(zeros)),
    }


@pytest.mark.parametrize("spec", ["zstd", "gz", "bz2", "br", "snappy"])
def test_decompression_bomb_is_refused_without_allocating_it(
    spec: str, bombs: dict[str, bytes], tmp_path: Path
) -> None:
    comp = get_compression(spec)
    assert comp is not None
    payload = bombs[spec]
    assert len(payload) < BOMB_SIZE // 20
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"bomb\.bin.*more than the 4096 bytes"):
            comp.decompress(payload, expected_size=4096, name="bomb.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # far below the 32 MiB the payload expands to

    src, dst = tmp_path / "bomb.bin", tmp_path / "out"
    src.write_bytes(payload)
    with pytest.raises(FormatError, match="more than the 4096 bytes") as info:
        comp.decompress_file(src, dst, expected_size=4096)
    assert str(src) in str(info.value)
    assert dst.stat().st_size <= 4096


@pytest.mark.parametrize("spec", ["zstd", "gz", "bz2", "br", "snappy"])
def test_short_output_is_a_format_error(spec: str, tmp_path: Path) -> None:
    comp = get_compression(spec)
    assert comp is not None
    packed = comp.compress(SAMPLE)
    with pytest.raises(
        FormatError, match=rf"shard\.x: decompressed to {len(SAMPLE)} bytes.*{len(SAMPLE) + 1}"
    ):
        comp.decompress(packed, expected_size=len(SAMPLE) + 1, name="shard.x")
    src = tmp_path / "shard.x"
    src.write_bytes(packed)
    with pytest.raises(FormatError, match="decompressed to"):
        comp.decompress_file(src, tmp_path / "out", expected_size=len(SAMPLE) + 1)


def _corruptions(spec: str, packed: bytes) -> list[bytes]:
    cases = [packed[: len(packed) - 7], b"garbage" * 5, packed + b"trailing junk"]
    if spec in ("gz", "bz2"):
        # Only these carry a checksum of the content; elsewhere a flipped literal byte decodes to
        # different bytes of the right size, which the shard hash (not the codec) catches.
        middle = len(packed) // 2
        cases.append(packed[:middle] + bytes([packed[middle] ^ 0xFF]) + packed[middle + 1 :])
    return cases


@pytest.mark.parametrize("spec", ["zstd", "gz", "bz2", "br", "snappy"])
def test_corrupt_input_is_a_format_error_naming_the_file(spec: str, tmp_path: Path) -> None:
    comp = get_compression(spec)
    assert comp is not None
    for i, bad in enumerate(_corruptions(spec, comp.compress(SAMPLE))):
        with pytest.raises(FormatError, match=r"bad\.bin"):
            comp.decompress(bad, expected_size=len(SAMPLE), name="bad.bin")
        src = tmp_path / f"bad{i}.bin"
        src.write_bytes(bad)
        with pytest.raises(FormatError, match=f"bad{i}.bin"):
            comp.decompress_file(src, tmp_path / "out", expected_size=len(SAMPLE))


def test_write_errors_are_not_reported_as_corrupt_data(tmp_path: Path) -> None:
    comp = get_compression("zstd")
    assert comp is not None
    src = tmp_path / "ok.zstd"
    src.write_bytes(comp.compress(SAMPLE))
    full = Path("/dev/full")  # every write fails with ENOSPC
    if full.exists():
        with pytest.raises(OSError) as info:
            comp.decompress_file(src, full, expected_size=len(SAMPLE))
        assert not isinstance(info.value, FormatError)
    with pytest.raises(FileNotFoundError):
        comp.decompress_file(tmp_path / "missing.zstd", tmp_path / "out", expected_size=1)
