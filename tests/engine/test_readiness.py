"""Readiness in the engine: an eviction forgets a shard in the runtime's one record of readiness, so the
walk and random access close their readers of it and fetch it again; nothing else keeps a copy."""

from __future__ import annotations

from pathlib import Path

from astreaming import StreamingDataset

from .conftest import MakeDataset


def test_an_evicted_shard_is_forgotten_and_fetched_again_by_walk_and_random_access(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(60, compression="zstd")  # whole shards: no reads by byte ranges
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=5)
    try:
        assert [s["id"] for s in ds] == list(range(60))
        shards = ds.num_shards
        assert shards >= 4 and ds.stats()["shards_downloaded"] == shards
        readiness = ds._sync_parts()[0].runtime.readiness
        assert all(readiness.is_ready(s) for s in range(shards))
        ds.evict_shard(1)
        ds.evict_shard(2)
        assert not readiness.is_ready(1) and not readiness.is_ready(2) and readiness.is_ready(0)
        # The walk closes its readers of the evicted shards at a shard switch, waits for them again
        # (which fetches them) and yields every sample as before.
        assert [s["id"] for s in ds] == list(range(60))
        assert ds.stats()["shards_downloaded"] == shards + 2
        assert readiness.is_ready(1) and readiness.is_ready(2)
        # Random access does the same.
        ds.evict_shard(3)
        first = int(ds.sample_offset_per_shard[3])
        assert ds[first]["id"] == first
        assert ds.stats()["shards_downloaded"] == shards + 3 and readiness.is_ready(3)
    finally:
        ds.close()


def test_a_shard_deleted_behind_the_walks_back_is_fetched_again(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    # Another process's eviction: this process still believes the shard ready. Without a cache limit
    # nothing pins it, so the read finds the file missing, forgets the shard and waits for it again.
    remote = make_dataset(60, compression="zstd")  # whole shards: no reads by byte ranges
    cache = tmp_path / "cache"
    ds = StreamingDataset(remote=str(remote), local=str(cache), batch_size=5)
    try:
        first = int(ds.sample_offset_per_shard[2])
        assert ds[first]["id"] == first
        runtime, readers = ds._sync_parts()
        readers.drop(2)  # no open reader keeps the old copy mapped
        (cache / ds.shards[2].raw_data.basename).unlink()
        assert runtime.runtime.readiness.is_ready(2)
        assert [s["id"] for s in ds] == list(range(60))
        assert (cache / ds.shards[2].raw_data.basename).exists()
    finally:
        ds.close()
