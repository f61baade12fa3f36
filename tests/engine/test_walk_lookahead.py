"""When a walk computes its look-ahead chunk: before its first sample only where it starts downloads.

A walk consumes its plan chunk by chunk (the first is one batch, then 2, 4, ... batches) and computes
the chunk after the one it reads so the fetcher can want that chunk's shards meanwhile. Over shards that
are all in place (a local dataset, no cache limit) that look-ahead has nothing to start, and computing
it first made a resume's first batch wait for two more batches of plan (for py1e, a span shuffle per
shard they touch). These tests record which batches of the plan were computed when the first sample
came out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from astreaming import MDSWriter, StreamingDataset
from astreaming.order.lazy import LazyWorkerPlan

BATCH = 4


def _write(out: Path, n: int = 400) -> Path:
    with MDSWriter(out=str(out), columns={"id": "int"}, size_limit=300) as w:
        for i in range(n):
            w.write({"id": i})
    return out


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """``(first, stop)`` of every range of batches a lazy plan computed, in order."""
    calls: list[tuple[int, int]] = []
    original = LazyWorkerPlan.batches

    def record(self: LazyWorkerPlan, first: int, stop: int) -> Any:
        calls.append((first, stop))
        return original(self, first, stop)

    monkeypatch.setattr(LazyWorkerPlan, "batches", record)
    return calls


@pytest.mark.parametrize("resume", [False, True])
def test_a_local_walk_computes_its_look_ahead_after_its_first_chunk(
    tmp_path: Path, computed: list[tuple[int, int]], resume: bool
) -> None:
    data = _write(tmp_path / "data")
    ds = StreamingDataset(
        local=str(data), batch_size=BATCH, shuffle=True, shuffle_algo="py1e", shuffle_seed=7
    )
    whole = [
        s["id"]
        for s in StreamingDataset(
            local=str(data), batch_size=BATCH, shuffle=True, shuffle_algo="py1e", shuffle_seed=7
        )
    ]
    if resume:
        ds.load_state_dict(
            {
                "epoch": 0,
                "sample_in_epoch": 10 * BATCH,
                "num_canonical_nodes": 1,
                "shuffle_seed": 7,
                "initial_physical_nodes": 1,
            }
        )
    computed.clear()
    it = iter(ds)
    first_batch = [next(it)["id"] for _ in range(BATCH)]
    # The whole first batch came out of the first chunk alone.
    assert computed == [(0, 1)]
    rest = [s["id"] for s in it]
    assert computed[1] == (1, 3)  # then the look-ahead, once the first chunk was handed out
    skipped = 10 * BATCH if resume else 0
    assert first_batch + rest == whole[skipped:]


# Shards fetched into the cache: the look-ahead's are wanted while the first chunk's come in. Under a
# cache limit, once every shard is cached (in place): eviction needs to know what comes next.
@pytest.mark.parametrize("cache_limit", [None, "1mb"])
def test_a_walk_that_fetches_or_runs_under_a_cache_limit_computes_its_look_ahead_first(
    tmp_path: Path, computed: list[tuple[int, int]], cache_limit: str | None
) -> None:
    data = _write(tmp_path / "remote")
    cache = str(tmp_path / "cache")
    ds = StreamingDataset(
        remote=str(data), local=cache, batch_size=BATCH, shuffle=True, shuffle_seed=7, cache_limit=cache_limit
    )
    if cache_limit is not None:
        list(ds)  # the cache now holds every shard
    computed.clear()
    it = iter(ds)
    next(it)
    assert computed == [(0, 1), (1, 3)]
    assert len(list(it)) == 400 - 1


def test_an_async_local_walk_computes_its_look_ahead_after_its_first_chunk(
    tmp_path: Path, computed: list[tuple[int, int]]
) -> None:
    data = _write(tmp_path / "data")

    async def walk() -> tuple[list[int], list[tuple[int, int]], list[int]]:
        ds = StreamingDataset(local=str(data), batch_size=BATCH, shuffle=True, shuffle_seed=7)
        computed.clear()
        it = ds.__aiter__()
        first_batch = [(await it.__anext__())["id"] for _ in range(BATCH)]
        seen = list(computed)
        rest = [s["id"] async for s in it]
        return first_batch, seen, rest

    first_batch, seen, rest = asyncio.run(walk())
    assert seen == [(0, 1)]
    assert computed[1] == (1, 3)
    assert sorted(first_batch + rest) == list(range(400))
