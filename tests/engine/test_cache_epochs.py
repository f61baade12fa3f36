"""Epoch boundaries under ``cache_limit``: the shards the next epoch starts with are kept, not re-downloaded.

At the end of an epoch the current plan needs none of the shards the next one starts with; without a look
at the next plan they count as never needed, go first, and come down again moments later. The walk looks
up the next epoch's first positions (cheap with the lazy plans) and eviction keeps those shards after the
current epoch's needs but before shards nobody needs. Downloads are counted, not timed.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming import StreamingDataset
from astreaming.engine import iterate, planfeed
from astreaming.engine.runtime import Runtime

from .conftest import MakeDataset

SAMPLES = 800
EPOCHS = 3
#: Shards the limit holds.
HELD = 6


@pytest.mark.parametrize(("shuffle", "block"), [(False, None), (True, 150)], ids=["sweep", "block-shuffle"])
def test_the_next_epochs_first_shards_survive_the_boundary(
    make_dataset: MakeDataset, tmp_path: Path, shuffle: bool, block: int | None
) -> None:
    remote = make_dataset(SAMPLES, size_limit=2000)
    shard_bytes = max(p.stat().st_size for p in remote.glob("shard.*"))
    ds = StreamingDataset(
        remote=str(remote),
        local=str(tmp_path / "cache"),
        batch_size=4,
        shuffle=shuffle,
        shuffle_block_size=block,
        predownload=16,
        cache_limit=(remote / "index.json").stat().st_size + HELD * shard_bytes,
    )
    n = ds.num_shards
    assert n > 2 * HELD - 3  # the limit binds: an epoch cannot keep its shards
    downloads = []
    for _ in range(EPOCHS):
        assert sorted(int(s["id"]) for s in ds) == list(range(SAMPLES))  # type: ignore[call-overload]
        downloads.append(ds.stats()["shards_downloaded"])
    assert downloads[0] == n  # the first epoch downloads every shard once (no refetch in these orders)
    later = downloads[-1] - downloads[0]
    # Each boundary keeps at least HELD - 2 of the next epoch's first shards (the limit also holds the
    # shard being read and one coming in). Without the look at the next epoch: n - 2 per epoch.
    assert later <= (EPOCHS - 1) * (n - (HELD - 2)), downloads


def _held_dataset(make_dataset: MakeDataset, tmp_path: Path) -> StreamingDataset:
    """A shuffled dataset of SAMPLES whose cache_limit holds its index and HELD shards."""
    remote = make_dataset(SAMPLES, size_limit=2000)
    shard_bytes = max(p.stat().st_size for p in remote.glob("shard.*"))
    return StreamingDataset(
        remote=str(remote),
        local=str(tmp_path / "cache"),
        batch_size=4,
        shuffle=True,
        shuffle_block_size=150,
        cache_limit=(remote / "index.json").stat().st_size + HELD * shard_bytes,
    )


@pytest.mark.parametrize("front", ["for", "async for"])
def test_the_next_epochs_first_shards_are_looked_up_off_the_reading_thread(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, front: str
) -> None:
    """The lookup replays the next epoch's shuffle draws (about 0.25 s per 10M samples, issue 8): it runs
    on a thread of its own, started once a quarter of the epoch was read, and the runtime gets exactly
    what the reading thread computed before, ahead of the plan's end."""
    ds = _held_dataset(make_dataset, tmp_path)
    taken: list[int] = []
    lookups: list[tuple[threading.Thread, int, tuple[Any, ...]]] = []
    events: list[tuple[str, Any]] = []
    real = planfeed.next_plan_shards

    def looked_up(*args: Any) -> Any:
        lookups.append((threading.current_thread(), len(taken), args))
        return real(*args)

    real_expect, real_end = Runtime.expect_next, Runtime.end_plan

    def expect_next(runtime: Runtime, shards: Any) -> None:
        events.append(("hint", np.array(shards)))
        real_expect(runtime, shards)

    def end_plan(runtime: Runtime) -> None:
        events.append(("end", None))
        real_end(runtime)

    monkeypatch.setattr(iterate, "next_plan_shards", looked_up)
    monkeypatch.setattr(Runtime, "expect_next", expect_next)
    monkeypatch.setattr(Runtime, "end_plan", end_plan)
    if front == "for":
        taken.extend(int(s["id"]) for s in ds)  # type: ignore[call-overload]
    else:

        async def walk() -> None:
            async for sample in ds:
                taken.append(int(sample["id"]))

        asyncio.run(walk())
    ds.close()
    assert sorted(taken) == list(range(SAMPLES))
    ((thread, read_before, args),) = lookups
    assert thread is not threading.current_thread() and thread.name == "astreaming-next-epoch"
    assert read_before >= SAMPLES // 4  # the epoch was well under way
    assert [kind for kind, _ in events] == ["hint", "end"]  # in place before the plan ended
    want = real(*args)  # what the reading thread computed before
    assert want is not None and len(want) > 0 and np.array_equal(events[0][1], want)


def test_a_walks_look_ahead_leaves_the_epochs_shuffle_artefacts_until_the_walk_ends(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a cache_limit the walk computes its whole plan ahead after the first batch (eviction sees
    that far); the plan's artefacts are the node's other workers' too, so they stay until the walk ends
    (before, the look-ahead discarded them right after the first batch: the other workers computed them
    again, and one listing the directory as it went saw it empty, issue 8's KeyError)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # this test's plan store
    plans = temp / "astreaming-plans"
    ds = _held_dataset(make_dataset, tmp_path)

    def artefacts() -> set[str]:
        return {p.name for p in plans.iterdir() if p.is_dir() and ".tmp-" not in p.name}

    samples = iter(ds)
    # Past the walk's first chunk (in one shard), where the look-ahead computes the rest of the plan;
    # before a quarter of the epoch, where the next epoch's lookup starts (its artefacts stay).
    ahead = int(ds.samples_per_shard.max()) + 2 * 4
    assert ahead < SAMPLES // 4
    first = [next(samples) for _ in range(ahead)]
    held = artefacts()
    assert held  # the epoch's draws (and the cell its first batches read)
    rest = list(samples)
    assert sorted(int(s["id"]) for s in first + rest) == list(range(SAMPLES))
    assert not held & artefacts()  # discarded once the walk ended
    ds.close()
