"""cache_limit: furthest-next-use eviction, pins, never the source data, clear errors instead of hangs."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Hashable
from pathlib import Path

import pytest

from astreaming.cache.budget import CacheBudget, check_cache_limit, file_sizes
from astreaming.errors import CacheError, ConfigError


class Disk:
    """Real files per shard, so eviction is observable on disk and sizes come from stat()."""

    def __init__(self, root: Path, next_use: dict[Hashable, float]) -> None:
        self.root = root
        self.next_use = next_use
        self.removed: list[Hashable] = []
        self.notified: list[Hashable] = []

    def path(self, key: Hashable) -> Path:
        return self.root / f"shard.{key}"

    def write(self, key: Hashable, nbytes: int) -> int:
        self.path(key).write_bytes(b"x" * nbytes)
        return file_sizes([self.path(key)])

    def remove(self, key: Hashable) -> None:
        self.path(key).unlink()
        self.removed.append(key)

    def budget(self, limit: int | None) -> CacheBudget[Hashable]:
        return CacheBudget(
            limit,
            next_use=lambda k: self.next_use.get(k, math.inf),
            remove=self.remove,
            on_evict=self.notified.append,
        )


def fill(disk: Disk, budget: CacheBudget[Hashable], sizes: dict[int, int]) -> None:
    for key, size in sizes.items():
        assert budget.try_reserve(key, size) == []
        budget.commit(key, disk.write(key, size))


def test_evicts_the_shard_used_furthest_in_the_future(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 5, 1: 50, 2: 10, 3: 30})
    budget = disk.budget(400)
    fill(disk, budget, {0: 100, 1: 100, 2: 100, 3: 100})
    assert budget.usage == 400

    assert budget.try_reserve(4, 100) == [1]
    budget.commit(4, disk.write(4, 100))
    disk.next_use[4] = 7
    assert budget.try_reserve(5, 150) == [3, 2]  # 30 then 10: two evictions to fit 150
    assert disk.removed == [1, 3, 2] == disk.notified
    assert not disk.path(1).exists() and not disk.path(3).exists() and disk.path(0).exists()
    assert budget.statistics().evictions == 3
    assert budget.statistics().evicted_bytes == 300


def test_shards_never_needed_again_go_first(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 1, 1: 2})  # shard 2 has no next use: inf
    budget = disk.budget(300)
    fill(disk, budget, {0: 100, 1: 100, 2: 100})
    assert budget.try_reserve(3, 100) == [2]


def test_pinned_shard_is_never_evicted(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 5, 1: 50, 2: 10})
    budget = disk.budget(300)
    fill(disk, budget, {0: 100, 1: 100, 2: 100})
    assert budget.pin(1) is True
    assert budget.pin(1) is True  # refcounted
    assert budget.try_reserve(3, 100) == [2]
    budget.unpin(1)
    budget.commit(3, disk.write(3, 100))
    disk.next_use[3] = 1
    assert budget.try_reserve(4, 100) == [0]  # still pinned once
    budget.unpin(1)
    budget.commit(4, disk.write(4, 100))
    disk.next_use[4] = 2
    assert budget.try_reserve(5, 100) == [1]  # fully unpinned now


def test_data_of_a_stream_without_remote_is_never_evicted(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 1, 1: 2, 2: math.inf})
    budget = disk.budget(300)
    fill(disk, budget, {0: 100, 1: 100})
    budget.add("source", disk.write("source", 100), evictable=False)  # next use: never
    assert budget.try_reserve(2, 100) == [1]
    assert disk.path("source").exists()
    budget.commit(2, disk.write(2, 100))
    assert budget.try_reserve(3, 200) == [2, 0]  # 2 is never needed again, then 0 (next use 1)
    assert disk.path("source").exists()


def test_cache_error_when_nothing_can_be_evicted(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {})
    budget = disk.budget(250)
    budget.add("source", disk.write("source", 100), evictable=False)
    fill(disk, budget, {0: 100})
    budget.pin(0)
    # Pinned by someone who may unpin later: not yet an error, just "not now".
    assert budget.try_reserve(1, 100) is None
    budget.unpin(0)
    budget.add(0, 0, evictable=False)  # now shard 0 is part of the source too
    assert budget.statistics().unevictable == 200
    with pytest.raises(CacheError, match=r"cache_limit=250.*shard 1.*100 bytes"):
        budget.try_reserve(1, 100)
    assert disk.removed == []


def test_cache_error_when_a_shard_exceeds_the_limit(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {})
    budget = disk.budget(1000)
    budget.add("index", 200, evictable=False)
    with pytest.raises(CacheError, match=r"cache_limit=1000.*shard 7 \(900 bytes\).*200 bytes"):
        budget.try_reserve(7, 900)


async def test_reserve_waits_for_an_outstanding_download(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 1, 1: 2})
    budget = disk.budget(200)
    assert budget.try_reserve(0, 100) == []
    assert budget.try_reserve(1, 100) == []  # both in flight: nothing resident to evict

    async def finish_later() -> None:
        await asyncio.sleep(0.05)
        budget.release(0)  # download 0 failed: its room frees up

    finisher = asyncio.ensure_future(finish_later())
    evicted = await asyncio.wait_for(budget.reserve(2, 100), 5)
    await finisher
    assert evicted == []
    assert budget.statistics().reserved == 200


async def test_reserve_evicts_a_download_once_it_committed(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 90, 1: 1})
    budget = disk.budget(200)
    fill(disk, budget, {1: 100})
    budget.pin(1)  # being read
    assert budget.try_reserve(0, 100) == []

    async def commit_later() -> None:
        await asyncio.sleep(0.05)
        budget.commit(0, disk.write(0, 100))

    committer = asyncio.ensure_future(commit_later())
    assert await asyncio.wait_for(budget.reserve(2, 100), 5) == [0]
    await committer


async def test_reserve_behind_pins_errors_instead_of_hanging(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {})
    budget = disk.budget(200)
    fill(disk, budget, {0: 100, 1: 100})
    budget.pin(0)
    budget.pin(1)
    with pytest.raises(CacheError, match=r"cache_limit=200.*pinned shards 0, 1"):
        await asyncio.wait_for(budget.reserve(2, 100, pin_timeout=0.1), 5)


async def test_reserve_proceeds_when_the_consumer_thread_unpins(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 3})
    budget = disk.budget(100)
    fill(disk, budget, {0: 100})
    budget.pin(0)
    timer = threading.Timer(0.05, budget.unpin, args=(0,))
    timer.start()
    assert await asyncio.wait_for(budget.reserve(1, 100, pin_timeout=5), 5) == [0]
    timer.join()


def test_pin_reports_residency_so_an_evicted_shard_is_refetched(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {0: 9})
    budget = disk.budget(100)
    fill(disk, budget, {0: 100})
    assert budget.try_reserve(1, 100) == [0]
    assert budget.pin(0) is False
    assert budget.is_resident(0) is False


def test_accounting_uses_actual_file_sizes_and_discard(tmp_path: Path) -> None:
    disk = Disk(tmp_path, {})
    budget = disk.budget(None)
    raw = disk.write("raw", 123)
    (tmp_path / "zip").write_bytes(b"z" * 45)
    assert budget.try_reserve(0, 10_000) == []  # unlimited: never evicts
    budget.commit(0, raw + file_sizes([tmp_path / "zip", tmp_path / "missing"]))
    assert budget.usage == 168
    budget.discard(0, 45)  # the zip was deleted after decompressing
    assert budget.usage == 123
    assert budget.is_resident(0)
    budget.add("src", 7, evictable=False)
    budget.discard("src", 3)
    assert budget.statistics().unevictable == 4
    budget.discard("src")
    budget.discard(0)
    assert budget.usage == 0
    assert not budget.is_resident(0)
    stats = budget.statistics()
    assert (stats.limit, stats.reserved, stats.resident_shards) == (None, 0, 0)


def test_init_check_matches_mosaic() -> None:
    check_cache_limit(None, index_bytes=10**9, largest_shard_bytes=10**9)
    check_cache_limit(4000, index_bytes=100, largest_shard_bytes=1000)
    with pytest.raises(ConfigError, match=r"cache_limit=100 .*index files \(100 bytes\)"):
        check_cache_limit(100, index_bytes=100, largest_shard_bytes=1)
    with pytest.raises(ConfigError, match=r"cache_limit=3999 .*4 x the largest shard \(1000 bytes"):
        check_cache_limit(3999, index_bytes=100, largest_shard_bytes=1000)


def test_non_positive_limit_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cache_limit"):
        Disk(tmp_path, {}).budget(0)


def test_a_failed_deletion_is_a_cache_error_naming_the_shard() -> None:
    def remove(key: Hashable) -> None:
        raise PermissionError(f"[Errno 13] Permission denied: 'shard.{key}'")

    budget = CacheBudget(100, next_use=lambda k: 1.0, remove=remove)
    budget.add(5, 100)
    with pytest.raises(CacheError, match=r"evicting shard 5 .*cache_limit.*Permission denied"):
        budget.try_reserve(6, 100)
    assert budget.is_resident(5)  # accounting unchanged by the failed eviction
    assert budget.usage == 100


def test_commit_replaces_the_recorded_size_instead_of_adding() -> None:
    budget: CacheBudget[int] = CacheBudget(1000, next_use=lambda k: 1.0, remove=lambda k: None)
    budget.add(3, 400)  # found on disk at start-up
    assert budget.try_reserve(3, 400) == []  # fetched again anyway (e.g. another process published it)
    budget.commit(3, 400)
    assert budget.usage == 400
    assert budget.statistics().reserved == 0


def test_only_pins_on_other_resident_shards_defer_the_error() -> None:
    budget: CacheBudget[int] = CacheBudget(300, next_use=lambda k: 1.0, remove=lambda k: None)
    budget.add(0, 100, evictable=False)  # source data of a local-only stream
    budget.add(9, 100)  # shard 9's zip is here; decompressing needs 150 more
    budget.pin(9)  # the consumer waits for shard 9 itself: releasing that pin frees nothing for it
    budget.pin(4)  # a shard that is not on disk: its pin frees nothing either
    with pytest.raises(CacheError, match=r"shard 9 needs 150 bytes, 200 bytes are in use"):
        budget.try_reserve(9, 150)
    budget.add(5, 50)
    budget.pin(5)  # a resident shard someone reads: it will be unpinned, so wait instead of failing
    assert budget.try_reserve(9, 150) is None
