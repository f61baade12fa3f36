"""The async front end: ``await StreamingDataset.open``, ``async with``/``aclose``, and ``stats()`` after
every way of iterating (``for``, ``ds[i]``, ``async for``, DataLoader workers)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from astreaming import ConfigError, StreamingDataLoader, StreamingDataset
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

from .conftest import MakeDataset


def shard_bytes(remote: Path) -> int:
    return sum(p.stat().st_size for p in remote.glob("shard.*"))


@pytest.fixture
def served(make_dataset: MakeDataset) -> Iterator[tuple[StaticHTTPServer, Path]]:
    remote = make_dataset(60)
    with StaticHTTPServer(remote.parent) as server:
        yield server, remote


def test_open_does_not_block_the_running_loop(served: tuple[StaticHTTPServer, Path], tmp_path: Path) -> None:
    """The index request is held at the proxy until the test's loop has run other tasks: a constructor
    blocking the loop could never release it (the proxy gives up after 20 s and the test fails)."""
    server, remote = served
    requested, released = threading.Event(), threading.Event()
    released_by_loop: list[bool] = []

    def hold_index(request: Any) -> bool:
        if request.path.endswith("index.json"):
            requested.set()
            released_by_loop.append(released.wait(20))
        return False  # inject nothing: this predicate only holds the request

    async def ticker() -> None:
        while not requested.is_set():
            await asyncio.sleep(0.001)
        for _ in range(3):  # the loop keeps running other tasks while the index is in flight
            await asyncio.sleep(0)
        released.set()

    async def main(url: str) -> StreamingDataset:
        tick = asyncio.create_task(ticker())
        ds = await StreamingDataset.open(remote=url, local=str(tmp_path / "c"), batch_size=5)
        await tick
        return ds

    with ThreadedFaultProxy(server.url, FaultPlan(error_rate=0.0, match=hold_index)) as proxy:
        ds = asyncio.run(main(f"{proxy.url}/{remote.name}"))
    assert released_by_loop == [True]
    assert ds.num_samples == 60


def test_async_with_and_stats_after_async_for(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(60)

    async def main() -> tuple[list[int], dict[str, Any], StreamingDataset]:
        async with await StreamingDataset.open(
            remote=str(remote), local=str(tmp_path / "c"), batch_size=5, shuffle=True
        ) as ds:
            got = [s["id"] async for s in ds]
            stats = ds.stats()
        await ds.aclose()  # idempotent
        return got, stats, ds

    got, stats, ds = asyncio.run(main())
    assert sorted(got) == list(range(60))
    assert stats["shards_downloaded"] == ds.num_shards and stats["bytes_downloaded"] == shard_bytes(remote)
    assert ds.stats()["shards_downloaded"] == ds.num_shards  # kept after the iteration's runtime closed


def test_stats_after_for_and_random_access(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(60)
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "c"), batch_size=5)
    assert ds[0]["id"] == 0 and ds.stats()["bytes_downloaded"] > 0
    assert sorted(s["id"] for s in ds) == list(range(60))
    stats = ds.stats()
    assert stats["shards_downloaded"] + stats["cache_hits"] >= ds.num_shards
    ds.close()
    assert ds.stats() == {**stats, "in_flight": 0}  # close() keeps the figures


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_stats_include_dataloader_workers(context: str, make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(60)
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "c"), batch_size=5)
    loader = StreamingDataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context=context)
    assert sorted(int(i) for batch in loader for i in batch["id"]) == list(range(60))
    stats = ds.stats()
    assert stats["processes"] == 3  # this one and both workers
    # One download per shard per node, whichever worker made it.
    assert stats["shards_downloaded"] == ds.num_shards and stats["bytes_downloaded"] == shard_bytes(remote)


def test_stats_count_evictions(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(400, size_limit=1000)
    largest = max(p.stat().st_size for p in remote.glob("shard.*"))
    limit = (remote / "index.json").stat().st_size + 5 * largest
    ds = StreamingDataset(
        remote=str(remote),
        local=str(tmp_path / "c"),
        batch_size=4,
        shuffle=True,
        shuffle_algo="naive",
        predownload=16,
        cache_limit=limit,
    )
    assert sorted(s["id"] for s in ds) == list(range(400))
    stats = ds.stats()
    assert stats["evictions"] > 0 and stats["evicted_bytes"] >= stats["evictions"] * 100
    assert ds.cache_usage <= limit
    before = ds.stats()["evictions"]
    resident = next(
        s for s in range(ds.num_shards) if (tmp_path / "c" / ds.shards[s].raw_data.basename).exists()
    )
    ds.evict_shard(resident)
    assert ds.stats()["evictions"] == before + 1


def test_loader_batch_size_must_match_the_dataset(make_dataset: MakeDataset, tmp_path: Path) -> None:
    ds = StreamingDataset(remote=str(make_dataset(20)), local=str(tmp_path / "c"), batch_size=4)
    for kind in (ConfigError, ValueError):
        with pytest.raises(kind, match=r"batch_size=8 .* batch_size=4"):
            StreamingDataLoader(ds, batch_size=8)
    assert sum(len(b["id"]) for b in StreamingDataLoader(ds, batch_size=4)) == 20


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_front_end_under_each_anyio_backend(
    backend: str, make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(600, size_limit=2000)
    kwargs = dict(remote=str(remote), batch_size=5, shuffle=True)
    reference = StreamingDataset(local=str(tmp_path / "sync"), **kwargs)  # type: ignore[arg-type]
    expected, expected_next = [s["id"] for s in reference], [s["id"] for s in reference]  # epochs 0, 1

    async def main() -> tuple[list[int], dict[str, Any]]:
        async with await StreamingDataset.open(local=str(tmp_path / backend), **kwargs) as ds:
            got = [s["id"] async for s in ds]
            partial = []
            # Stopped early: aclosing closes the walk at once (trio insists), cancelling its downloads.
            async with contextlib.aclosing(ds.__aiter__()) as samples:
                async for sample in samples:
                    partial.append(sample["id"])
                    if len(partial) == 3:
                        break
            assert partial == expected_next[:3]
            return got, ds.stats()

    got, stats = anyio.run(main, backend=backend)
    assert got == expected  # the same order on either loop
    assert stats["shards_downloaded"] == len(list(remote.glob("shard.*")))
