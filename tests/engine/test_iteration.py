"""Iteration, random access, epochs and errors of StreamingDataset through its public API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from astreaming import (
    ConfigError,
    MDSWriter,
    ObjectNotFound,
    Stream,
    StreamingDataLoader,
    StreamingDataset,
)
from astreaming.errors import FormatError, HashMismatch

from .conftest import MakeDataset


def disk_use(directory: Path) -> int:
    """Bytes of every file in ``directory``, including temp and .part files being written (not the
    ledger's directory, which is bookkeeping)."""
    total = 0
    for entry in os.scandir(directory):
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False) and entry.name != "index.json":
                total += entry.stat().st_size
    return total


def ids(samples: list[dict[str, object]]) -> list[int]:
    return [int(s["id"]) for s in samples]  # type: ignore[call-overload]


def test_sync_and_async_iteration_yield_identical_samples(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(200, compression="zstd", hashes=["sha1"])
    kwargs = dict(remote=str(remote), batch_size=8, shuffle=True, num_canonical_nodes=2, validate_hash="sha1")
    sync = list(StreamingDataset(local=str(tmp_path / "a"), **kwargs))  # type: ignore[arg-type]

    async def collect() -> list[dict[str, object]]:
        ds = StreamingDataset(local=str(tmp_path / "b"), **kwargs)  # type: ignore[arg-type]
        return [sample async for sample in ds]

    asynced = asyncio.run(collect())
    assert ids(sync) == ids(asynced)
    assert sorted(ids(sync)) == list(range(200))
    assert [s["pad"] for s in sync] == ["x" * (i % 17) for i in ids(sync)]


def test_random_access_downloads_on_demand(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(120, compression="zstd")
    local = tmp_path / "cache"
    ds = StreamingDataset(remote=str(remote), local=str(local))  # no batch_size needed
    assert len(list(local.glob("shard.*"))) == 0
    assert ds[7]["id"] == 7
    assert ds[-1]["id"] == 119
    assert ids(ds[[3, 100, 5]]) == [3, 100, 5]
    assert ids(ds[10:20:3]) == [10, 13, 16, 19]
    assert ids(ds[torch.tensor([1, 2]).numpy()]) == [1, 2]
    with pytest.raises(IndexError, match="120"):
        ds[120]
    # Only the shards touched were fetched, and only raw files remain (keep_zip=False).
    fetched = sorted(p.name for p in local.glob("shard.*"))
    assert fetched and all(name.endswith(".mds") for name in fetched)
    assert len(fetched) < ds.num_shards
    assert ds.stats()["shards_downloaded"] == len(fetched)


def test_epochs_advance_only_when_completed_and_set_epoch_pins(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(64)
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "c"), batch_size=4, shuffle=True)
    first = ids(list(ds))  # epoch 0, completed
    probe = iter(ds)
    probed = ids([next(probe)])  # a probing iteration of epoch 1, abandoned after one sample
    del probe
    second = ids(list(ds))  # still epoch 1: the abandoned iteration did not advance it
    assert second[:1] == probed
    assert second != first
    third = ids(list(ds))  # epoch 2
    assert third not in (first, second)
    ds.set_epoch(0)
    assert ids(list(ds)) == first
    assert ids(list(ds)) == first  # pinned until set again


def test_state_dict_resumes_in_a_new_dataset(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(96)
    kwargs = dict(remote=str(remote), batch_size=4, shuffle=True, shuffle_seed=3)
    ds = StreamingDataset(local=str(tmp_path / "d"), **kwargs)  # type: ignore[arg-type]
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=2)
    full = [b["id"].tolist() for b in loader]
    it = iter(loader)
    [next(it) for _ in range(5)]
    state = loader.state_dict()
    assert state is not None and state["epoch"] == 1 and state["sample_in_epoch"] == 20
    del it
    ds2 = StreamingDataset(local=str(tmp_path / "e"), **kwargs)  # type: ignore[arg-type]
    ds2.load_state_dict(state)
    loader2 = StreamingDataLoader(ds2, batch_size=4, num_workers=2)
    rest = [b["id"].tolist() for b in loader2]
    ds3 = StreamingDataset(local=str(tmp_path / "f"), **kwargs)  # type: ignore[arg-type]
    ds3.set_epoch(1)
    epoch1 = [b["id"].tolist() for b in StreamingDataLoader(ds3, batch_size=4, num_workers=2)]
    assert rest == epoch1[5:]
    assert epoch1 != full


def test_missing_remote_shard_raises_naming_it(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(100)
    (remote / "shard.00002.mds").unlink()
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "g"), batch_size=4)
    with pytest.raises(ObjectNotFound, match=r"shard\.00002\.mds"):
        list(ds)


def test_worker_failure_reaches_the_main_process(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(100)
    (remote / "shard.00003.mds").unlink()
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "h"), batch_size=4)
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=2)
    with pytest.raises(ObjectNotFound, match=r"shard\.00003\.mds"):
        list(loader)


def test_corrupt_download_fails_hash_check_and_leaves_nothing(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(100, compression="zstd", hashes=["xxh64"])
    target = remote / "shard.00001.mds.zstd"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    local = tmp_path / "i"
    ds = StreamingDataset(remote=str(remote), local=str(local), batch_size=4, validate_hash="xxh64")
    with pytest.raises(HashMismatch, match=r"shard\.00001\.mds\.zstd"):
        list(ds)
    assert not list(local.glob("shard.00001*"))


def test_changed_remote_index_replaces_the_cached_copy(make_dataset: MakeDataset, tmp_path: Path) -> None:
    local = tmp_path / "j"
    old = make_dataset(40, name="v1")
    StreamingDataset(remote=str(old), local=str(local))
    new = make_dataset(50, name="v2", first_id=1000)
    shutil.rmtree(old)
    shutil.copytree(new, old)
    for stale in local.glob("shard.*"):
        stale.unlink()
    ds = StreamingDataset(remote=str(old), local=str(local))
    assert ds.num_samples == 50
    assert (local / "index.json").read_bytes() == (new / "index.json").read_bytes()
    assert ds[0]["id"] == 1000


def test_local_only_stream_reads_compressed_source(make_dataset: MakeDataset) -> None:
    source = make_dataset(30, compression="zstd")
    ds = StreamingDataset(streams=[Stream(local=str(source))], batch_size=5)
    assert sorted(ids(list(ds))) == list(range(30))
    assert list(source.glob("*.zstd"))  # the source's compressed files are never deleted


def test_bad_index_is_a_format_error_naming_the_file(tmp_path: Path) -> None:
    remote = tmp_path / "bad"
    remote.mkdir()
    (remote / "index.json").write_text('{"version": 2, "shards": [{"unexpected": 1}]}')
    with pytest.raises(FormatError, match=r"index\.json"):
        StreamingDataset(remote=str(remote), local=str(tmp_path / "k"))


def test_cache_limit_bounds_disk_use_and_keeps_order(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(400, size_limit=1000)
    shard_bytes = max(p.stat().st_size for p in remote.glob("shard.*"))
    index_bytes = (remote / "index.json").stat().st_size
    limit = index_bytes + 5 * shard_bytes
    local = tmp_path / "limited"
    kwargs = dict(remote=str(remote), batch_size=4, shuffle=True, shuffle_algo="naive", predownload=16)
    unlimited = ids(list(StreamingDataset(local=str(tmp_path / "free"), **kwargs)))  # type: ignore[arg-type]
    ds = StreamingDataset(local=str(local), cache_limit=limit, **kwargs)  # type: ignore[arg-type]
    seen: list[int] = []
    peak = 0
    for sample in ds:
        seen.append(int(sample["id"]))  # type: ignore[call-overload]
        peak = max(peak, disk_use(local))
    assert seen == unlimited
    assert peak <= limit
    assert 0 < ds.cache_usage <= limit
    assert ds.stats()["shards_downloaded"] > ds.num_shards  # some shards were evicted and re-fetched
    assert [ds[i]["id"] for i in (0, 399, 200)] == [0, 399, 200]


def test_cache_limit_never_evicts_local_only_data(make_dataset: MakeDataset, tmp_path: Path) -> None:
    source = make_dataset(200, size_limit=1000, name="source")
    files = sorted(p.name for p in source.iterdir())
    shard_bytes = max(p.stat().st_size for p in source.glob("shard.*"))
    ds = StreamingDataset(
        streams=[Stream(local=str(source))], batch_size=4, shuffle=True, cache_limit=5 * shard_bytes + 10_000
    )
    assert sorted(ids(list(ds))) == list(range(200))
    assert sorted(p.name for p in source.iterdir()) == files


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_follow_epochs_and_set_epoch(
    make_dataset: MakeDataset, tmp_path: Path, context: str
) -> None:
    remote = make_dataset(48)
    kwargs = dict(remote=str(remote), batch_size=4, shuffle=True)

    def epoch(ds: StreamingDataset, loader: StreamingDataLoader) -> list[list[int]]:
        return [b["id"].tolist() for b in loader]

    reference = StreamingDataset(local=str(tmp_path / "ref"), **kwargs)  # type: ignore[arg-type]
    ref_loader = StreamingDataLoader(reference, batch_size=4, num_workers=2)
    expected = [epoch(reference, ref_loader) for _ in range(3)]
    assert expected[0] != expected[1] != expected[2]

    ds = StreamingDataset(local=str(tmp_path / "p"), **kwargs)  # type: ignore[arg-type]
    loader = StreamingDataLoader(
        ds, batch_size=4, num_workers=2, persistent_workers=True, multiprocessing_context=context
    )
    assert epoch(ds, loader) == expected[0]
    assert epoch(ds, loader) == expected[1]
    ds.set_epoch(0)  # reaches the persistent workers
    assert epoch(ds, loader) == expected[0]
    ds.set_epoch(2)
    assert epoch(ds, loader) == expected[2]
    state = loader.state_dict()
    assert state is not None and state["epoch"] == 2 and state["sample_in_epoch"] == 48


def test_keep_zip_and_derived_attributes(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(90, compression="zstd", hashes=["xxh64"])
    local = tmp_path / "z"
    ds = StreamingDataset(remote=str(remote), local=str(local), batch_size=10, keep_zip=True)
    assert ds.next_epoch == 0
    assert sorted(ids(list(ds))) == list(range(90))
    assert ds.next_epoch == 1
    raws = sorted(p.name for p in local.glob("shard.*.mds"))
    zips = sorted(p.name for p in local.glob("shard.*.mds.zstd"))
    assert len(raws) == ds.num_shards and [z.removesuffix(".zstd") for z in zips] == raws
    assert (ds.num_samples, ds.size, len(ds), ds.epoch_size) == (90, 90, 90, 90)
    assert int(ds.samples_per_shard.sum()) == 90 and len(ds.shards) == ds.num_shards
    assert ds.cache_usage == 0  # no cache_limit: nothing accounted


def test_close_stops_downloads_and_the_dataset_stays_usable(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(60)
    local = tmp_path / "closed"
    with StreamingDataset(remote=str(remote), local=str(local), batch_size=6) as ds:
        it = iter(ds)
        next(it)
        del it
    shutil.rmtree(local / "")  # nothing keeps writing into the cache after close()
    local.mkdir()
    ds.close()  # idempotent
    assert ds[59]["id"] == 59


def test_list_of_dicts_batches_count_samples(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(40)
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "l"), batch_size=8)
    loader = StreamingDataLoader(ds, batch_size=8, collate_fn=lambda samples: samples)
    it = iter(loader)
    next(it)
    next(it)
    state = loader.state_dict()
    assert state is not None and state["sample_in_epoch"] == 16


def test_pickle_columns_refused_at_construction_unless_allowed(tmp_path: Path) -> None:
    remote = tmp_path / "pkl"
    with MDSWriter(out=str(remote), columns={"id": "int", "obj": "pkl"}) as writer:
        for i in range(5):
            writer.write({"id": i, "obj": {"i": i}})
    with pytest.raises(ConfigError, match="allow_unsafe_types"):
        StreamingDataset(remote=str(remote), local=str(tmp_path / "a"))
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").glob("shard.*"))
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "b"), allow_unsafe_types=True)
    assert ds[3]["obj"] == {"i": 3}


class Doubling(StreamingDataset):
    """A mosaic-style subclass that transforms samples in __getitem__."""

    def __getitem__(self, at: object) -> object:
        sample = super().__getitem__(at)
        return {"id": sample["id"], "twice": 2 * sample["id"]}


def test_subclass_getitem_applies_to_iteration(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(50)
    ds = Doubling(remote=str(remote), local=str(tmp_path / "sub"), batch_size=5, shuffle=True)
    plain = StreamingDataset(remote=str(remote), local=str(tmp_path / "plain"), batch_size=5, shuffle=True)
    got = list(ds)
    assert [s["id"] for s in got] == ids(list(plain))
    assert all(s["twice"] == 2 * s["id"] for s in got)
    loader = StreamingDataLoader(ds, batch_size=5, num_workers=2)
    assert sorted(int(i) for b in loader for i in b["twice"]) == [2 * i for i in range(50)]
