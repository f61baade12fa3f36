"""The scheduler, atomic publish, budget and next-use working together on real files under a cache_limit.

This is the wiring the dataset uses: ``fetch`` reserves room, publishes through ``ensure_file`` and commits
the actual size; eviction makes the scheduler forget the shard; the consumer pins what it reads.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt

from astreaming.cache.budget import CacheBudget, file_sizes
from astreaming.cache.nextuse import NextUse
from astreaming.cache.paths import CacheDir
from astreaming.cache.publish import ensure_file
from astreaming.fetch.scheduler import FetchScheduler

SHARD_BYTES = 1000
NUM_SHARDS = 10


def make_remote(root: Path) -> None:
    root.mkdir()
    for s in range(NUM_SHARDS):
        (root / f"shard.{s:05d}.mds").write_bytes(bytes([s]) * SHARD_BYTES)


def disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


async def test_a_plan_streams_through_a_small_cache(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    make_remote(remote)
    cache = CacheDir(tmp_path / "local", "train")
    rng = np.random.default_rng(0)
    runs = rng.permutation(np.repeat(np.arange(NUM_SHARDS), 3))  # every shard needed 3 times, shuffled
    plan = np.repeat(runs, 4)  # 4 consecutive samples per visit
    next_use = NextUse(plan)

    def shard_path(shard: object) -> Path:
        return cache.path(f"shard.{shard:05d}.mds")

    downloads: list[int] = []
    peak = 0

    async def fetch(shard: int) -> int:
        nonlocal peak
        await budget.reserve(shard, SHARD_BYTES)
        path = shard_path(shard)

        async def copy(tmp: Path) -> None:
            await asyncio.sleep(0.001)
            shutil.copyfile(remote / path.name, tmp)

        try:
            produced = await ensure_file(path, copy)
        except BaseException:
            budget.release(shard)
            raise
        budget.commit(shard, file_sizes([path]))
        downloads.append(shard)
        peak = max(peak, disk_usage(cache.root))
        return SHARD_BYTES if produced else 0

    sched = FetchScheduler(fetch, max_in_flight=3, predownload=12)
    budget = CacheBudget(
        4 * SHARD_BYTES,
        next_use=next_use,
        remove=lambda shard: shard_path(shard).unlink(),
        on_evict=sched.forget,
    )
    async with sched:
        sched.want_many(*_first_needs(plan))
        current = -1
        for position, shard in enumerate(plan.tolist()):
            if shard != current:
                if current >= 0:
                    budget.unpin(current)
                sched.advance(position)
                next_use.advance(position)
                while True:
                    await sched.wait(shard, position)
                    if budget.pin(shard):
                        break
                    budget.unpin(shard)  # evicted between ready and pin: fetch it again
                    sched.forget(shard)
                current = shard
            assert shard_path(shard).read_bytes() == bytes([shard]) * SHARD_BYTES
        budget.unpin(current)
        stats = sched.statistics()

    assert peak <= 4 * SHARD_BYTES
    assert budget.statistics().evictions > 0
    assert stats.failures == 0
    # Every shard was downloaded at least once, and eviction by next use keeps re-downloads bounded:
    # fewer downloads than visits (the no-cache worst case).
    assert set(downloads) == set(range(NUM_SHARDS))
    assert len(downloads) < len(runs)
    assert stats.bytes_done == SHARD_BYTES * len(downloads)
    assert sorted(p.name for p in cache.root.iterdir() if ".tmp-" in p.name or p.suffix == ".lock") == []


def _first_needs(plan: npt.NDArray[np.int64]) -> tuple[list[int], list[float]]:
    shards, first = np.unique(plan, return_index=True)
    order = np.argsort(first)
    return shards[order].tolist(), [float(x) for x in first[order]]
