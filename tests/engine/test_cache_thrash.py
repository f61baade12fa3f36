"""A ``cache_limit`` smaller than what the sample order reads from at once: counted and said, never silent.

The samples stay right under any limit that holds the shards being read; what a too-small limit costs is
bytes, downloading the same shard several times in one epoch. ``stats()['refetches']`` counts those
downloads and the log says so once per epoch, naming the limit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from astreaming import StreamingDataLoader, StreamingDataset

from .conftest import MakeDataset

SAMPLES = 400


def _room_for(remote: Path, shards: int) -> int:
    """A ``cache_limit`` that holds the index and ``shards`` of the dataset's largest shards."""
    shard_bytes = max(p.stat().st_size for p in remote.glob("shard.*"))
    return (remote / "index.json").stat().st_size + shards * shard_bytes


def _limited(remote: Path, local: Path, *, shuffle: bool) -> StreamingDataset:
    # Five shards: the naive shuffle reads all of the dataset's shards at once, a sweep one at a time.
    return StreamingDataset(
        remote=str(remote),
        local=str(local),
        batch_size=4,
        shuffle=shuffle,
        shuffle_algo="naive",
        predownload=16,
        cache_limit=_room_for(remote, 5),
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_limit_below_the_orders_working_set_counts_refetches_and_warns_once_per_epoch(
    make_dataset: MakeDataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = make_dataset(SAMPLES, size_limit=1000)
    ds = _limited(remote, tmp_path / "cache", shuffle=True)
    with caplog.at_level(logging.WARNING, logger="astreaming"):
        for epoch in range(2):
            assert sorted(int(s["id"]) for s in ds) == list(range(SAMPLES))  # type: ignore[call-overload]
            stats = ds.stats()
            # One process, every shard needed in every epoch: each shard's first fetch of an epoch is
            # a download or a cache hit, and every later one a refetch.
            fetches = stats["shards_downloaded"] + stats["cache_hits"]
            assert stats["refetches"] == fetches - ds.num_shards * (epoch + 1)
            assert stats["refetches"] > ds.num_shards // 2
            said = [m for m in _warnings(caplog) if "is too small for this sample order" in m]
            assert len(said) == epoch + 1, said  # once per epoch, not once per refetch
    limit = ds.cache_limit
    assert f"cache_limit={limit} bytes" in said[0] and "shuffle_block_size" in said[0]


def test_a_sweep_under_the_same_limit_refetches_nothing(
    make_dataset: MakeDataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = make_dataset(SAMPLES, size_limit=1000)
    ds = _limited(remote, tmp_path / "cache", shuffle=False)
    with caplog.at_level(logging.WARNING, logger="astreaming"):
        assert [int(s["id"]) for s in ds] == list(range(SAMPLES))  # type: ignore[call-overload]
    stats = ds.stats()
    assert stats["refetches"] == 0 and stats["shards_downloaded"] == ds.num_shards
    assert stats["evictions"] > 0  # the limit did bind: shards were evicted after their last use
    assert not [m for m in _warnings(caplog) if "too small" in m]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_refetches_of_dataloader_workers_reach_stats(
    make_dataset: MakeDataset, tmp_path: Path, context: str
) -> None:
    remote = make_dataset(SAMPLES, size_limit=1000)
    ds = _limited(remote, tmp_path / "cache", shuffle=True)
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    assert sorted(i for b in loader for i in b["id"].tolist()) == list(range(SAMPLES))
    stats = ds.stats()
    assert stats["processes"] >= 2 and stats["refetches"] > 0


def _near_full(remote: Path, local: Path) -> StreamingDataset:
    # Five shards, room for four, and the default shuffle mixes all five into every worker's order.
    return StreamingDataset(
        remote=str(remote), local=str(local), batch_size=4, shuffle=True, cache_limit=_room_for(remote, 4)
    )


def _downloads(ds: StreamingDataset, workers: int, context: str | None) -> int:
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=context)
    assert sorted(i for b in loader for i in b["id"].tolist()) == list(range(NEAR_FULL))
    return int(ds.stats()["shards_downloaded"])


NEAR_FULL = 450


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_two_workers_under_a_near_full_limit_download_about_what_one_process_does(
    make_dataset: MakeDataset, tmp_path: Path, context: str
) -> None:
    # The order needs the fifth shard every few samples: some downloads are unavoidable, and one
    # process makes them (the reference). Two workers used to take turns evicting each other's next
    # shard (59-75 downloads against the reference's 45-49); a waiting consumer now leaves the other
    # reader's next shard to it, and the two download about what one process does: 45-49 idle, up to 59
    # against 48 once on a loaded 2-core machine (CI, 7 Dec 2026), where the readers' timing still
    # decides some evictions. 1.35x: above that (1.23x), below most of the turn-taking before (up to 1.6x).
    remote = make_dataset(NEAR_FULL, size_limit=2450)
    one = _downloads(_near_full(remote, tmp_path / "one"), 0, None)
    ds = _near_full(remote, tmp_path / "two")
    assert ds.num_shards == 5
    two = _downloads(ds, 2, context)
    assert two <= 1.35 * one, (two, one)
