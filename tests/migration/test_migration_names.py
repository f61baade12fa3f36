"""The names mosaic users import, through astreaming's public API (and ``astreaming.compat``)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming import (
    Array,
    CacheError,
    ConfigError,
    MDSEncoding,
    MDSWriter,
    Spanner,
    Stream,
    StreamingDataset,
    Zstandard,
    bytes_to_int,
    compat,
    number_abbrev_to_int,
    register_encoding,
    streams_registry,
    upload,
)
from astreaming.testing.servers import FakeGCSServer

from .conftest import BUCKET, MakeDataset


class Complex128(MDSEncoding):
    """A fixed-size user encoding, written as mosaic's docs show."""

    size = 16

    def encode(self, obj: Any) -> bytes:
        return np.complex128(obj).tobytes()

    def decode(self, data: bytes) -> Any:
        return complex(np.frombuffer(data, np.complex128)[0])


class Words(compat.Encoding):
    """A variable-size user encoding registered with mosaic's spelling."""

    def encode(self, obj: Any) -> bytes:
        return " ".join(obj).encode()

    def decode(self, data: bytes) -> Any:
        return data.decode().split(" ")


register_encoding("complex128", Complex128)
compat._encodings["words"] = Words


def test_custom_encodings_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "custom"
    with MDSWriter(out=str(out), columns={"z": "complex128", "w": "words", "id": "int"}, size_limit=300) as w:
        for i in range(40):
            w.write({"z": complex(i, -i), "w": ["a"] * (i % 4 + 1), "id": i})
    entry = json.loads((out / "index.json").read_text())["shards"][0]
    assert entry["column_encodings"] == ["int", "words", "complex128"]  # sorted by column name
    assert entry["column_sizes"] == [8, None, 16]
    ds = StreamingDataset(remote=str(out), local=str(tmp_path / "cache"), batch_size=4, shuffle=True)
    samples = sorted(ds, key=lambda s: s["id"])
    assert [s["z"] for s in samples] == [complex(i, -i) for i in range(40)]
    assert [s["w"] for s in samples] == [["a"] * (i % 4 + 1) for i in range(40)]
    assert ds[5]["z"] == complex(5, -5)
    assert {"complex128", "words", "int"} <= compat.get_mds_encodings()
    assert compat.get_mds_encoded_size("complex128") == 16 and compat.is_mds_encoding("words")
    assert compat.mds_decode("words", compat.mds_encode("words", ["x", "y"])) == ["x", "y"]


def test_custom_encoding_cannot_replace_a_builtin() -> None:
    with pytest.raises(ConfigError, match="built-in"):
        register_encoding("int", Complex128)
    assert not compat.is_mds_encoding("no_such_encoding")


class CatalogStream(Stream):
    """A Stream subclass that finds its remote from a catalogue root and a dataset name."""

    def __init__(self, *, catalog: str, name: str, remote: str | None = None, **kwargs: Any) -> None:
        super().__init__(remote=os.path.join(catalog, name), **kwargs)


def test_custom_stream_through_the_registry(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(30)
    streams_registry.register("catalog", func=CatalogStream)

    @streams_registry.register("catalog2")
    class Catalog2(CatalogStream):
        pass

    for name in ("catalog", "catalog2"):
        ds = StreamingDataset(
            local=str(tmp_path / name),
            stream_name=name,
            stream_config={"catalog": str(remote.parent), "name": remote.name},
            batch_size=5,
        )
        assert type(ds.streams[0]).__name__ == {"catalog": "CatalogStream", "catalog2": "Catalog2"}[name]
        assert sorted(s["id"] for s in ds) == list(range(30))
    assert streams_registry.get_all()["catalog"] is CatalogStream


def test_prepare_and_evict_shard_over_gcs(
    make_dataset: MakeDataset, gs_env: FakeGCSServer, tmp_path: Path
) -> None:
    source = make_dataset(60)
    remote = f"gs://{BUCKET}/{uuid.uuid4().hex}/ds"
    upload(source, remote)
    local = tmp_path / "cache"
    ds = StreamingDataset(remote=remote, local=str(local), batch_size=5, cache_limit=10_000_000)
    shard_file = local / ds.shards[1].raw_data.basename
    assert not shard_file.exists()
    ds.prepare_shard(1)
    assert shard_file.exists() and ds.stats()["shards_downloaded"] == 1
    usage = ds.cache_usage
    assert usage >= shard_file.stat().st_size
    ds.evict_shard(1)
    assert not shard_file.exists() and ds.cache_usage == usage - ds.shards[1].raw_data.bytes
    first = int(ds.sample_offset_per_shard[1])
    assert ds[first]["id"] == first  # read again after the eviction
    with pytest.raises(IndexError, match="no such shard"):
        ds.prepare_shard(ds.num_shards)


def test_evict_shard_refuses_a_shard_being_read(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(60)
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "c"), batch_size=5, cache_limit="10mb")
    for sample in ds:
        shard, _ = ds.spanner[sample["id"]]
        with pytest.raises(CacheError, match="being read"):
            ds.evict_shard(shard)
        assert (tmp_path / "c" / ds.shards[shard].raw_data.basename).exists()
        break


def test_evict_shard_never_deletes_a_stream_without_remote(make_dataset: MakeDataset) -> None:
    source = make_dataset(30)
    before = sorted(p.name for p in source.iterdir())
    ds = StreamingDataset(streams=[Stream(local=str(source))], batch_size=5)
    with pytest.raises(ConfigError, match="no remote"):
        ds.evict_shard(0)
    assert sorted(p.name for p in source.iterdir()) == before


def test_proportion_per_stream_and_spanner(make_dataset: MakeDataset, tmp_path: Path) -> None:
    a, b = make_dataset(30), make_dataset(90)
    ds = StreamingDataset(
        streams=[
            Stream(remote=str(a), local=str(tmp_path / "a")),
            Stream(remote=str(b), local=str(tmp_path / "b")),
        ],
        batch_size=5,
    )
    assert ds.num_streams == 2
    assert ds.proportion_per_stream.tolist() == [0.25, 0.75]
    for sample_id in (0, 29, 30, 119):
        shard, index = ds.spanner[sample_id]
        assert int(ds.sample_offset_per_shard[shard]) + index == sample_id
        assert index < int(ds.samples_per_shard[shard])
    assert Spanner([3, 0, 2])[3] == (2, 0)
    with pytest.raises(IndexError):
        Spanner([3, 0, 2])[5]


def test_writer_get_config_matches_the_index(tmp_path: Path) -> None:
    with MDSWriter(
        out=str(tmp_path / "w"), columns={"id": "int"}, compression="zstd:7", hashes=["sha1"], size_limit=1000
    ) as writer:
        config = writer.get_config()
        for i in range(10):
            writer.write({"id": i})
    entry = json.loads((tmp_path / "w" / "index.json").read_text())["shards"][0]
    assert config == {key: entry[key] for key in config}
    assert config["compression"] == "zstd:7" and config["column_names"] == ["id"]


def test_compression_classes_and_hashes_read_what_the_writer_wrote(tmp_path: Path) -> None:
    with MDSWriter(
        out=str(tmp_path / "z"), columns={"id": "int"}, compression="zstd:7", hashes=["sha1", "xxh64"]
    ) as w:
        for i in range(100):
            w.write({"id": i})
    entry = json.loads((tmp_path / "z" / "index.json").read_text())["shards"][0]
    packed = (tmp_path / "z" / entry["zip_data"]["basename"]).read_bytes()
    raw = Zstandard(7).decompress(packed)
    assert compat.get_hash("sha1", raw) == entry["raw_data"]["hashes"]["sha1"]
    assert compat.get_hash("xxh64", packed) == entry["zip_data"]["hashes"]["xxh64"]
    assert compat.decompress("zstd", packed) == raw and compat.compress("zstd:7", raw) == packed
    assert isinstance(compat.get_compression("gz:3"), compat.Gzip)
    assert compat.compression_registry["zstd"] is Zstandard and compat.get_compression(None) is None
    assert compat.get_compression_extension("br:5") == "br"
    assert "zstd:22" in compat.get_compressions() and not compat.is_compression("zstd:23")
    assert compat.Snappy().decompress(compat.Snappy().compress(b"abc" * 50)) == b"abc" * 50
    assert compat.is_hash("xxh3_64") and not compat.is_hash("crc32") and "sha256" in compat.get_hashes()


class Squares(Array):
    @property
    def size(self) -> int:
        return 10

    def get_item(self, idx: int) -> int:
        assert 0 <= idx < 10
        return idx * idx


def test_array_base_indexing() -> None:
    sq = Squares()
    assert (sq[3], sq[-1], sq[2:5], sq[[1, 2]], sq[np.array([0, 9])]) == (9, 81, [4, 9, 16], [1, 4], [0, 81])
    with pytest.raises(IndexError):
        sq[10]
    with pytest.raises(TypeError):
        sq["a"]
    assert issubclass(StreamingDataset, Array)


def test_small_utilities() -> None:
    assert bytes_to_int("1.5kb") == 1536 and compat.bytes_to_int(2048) == 2048
    assert number_abbrev_to_int("64M") == 64_000_000 and compat.number_abbrev_to_int("3k") == 3000
    shm = sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else []
    assert compat.clean_stale_shared_memory() is None
    assert (sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else []) == shm
    assert compat.merge_index is not None and callable(compat.merge_index)
