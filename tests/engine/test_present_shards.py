"""Without ``cache_limit``, a walk reads a shard whose files are all in the cache without waiting for the
fetch scheduler: in the main process and in forked DataLoader workers, for a local dataset and for a
remote one whose cache is warm. Here every fetch the scheduler starts stalls for ever, so a walk that
waited for one would never end."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from astreaming import Stream, StreamingDataLoader, StreamingDataset
from astreaming.engine import fetcher as fetcher_mod
from astreaming.errors import AstreamingError

from .conftest import MakeDataset

#: A guard against a hung walk (the failure this file looks for), not a bound on its speed.
HANG_GUARD_S = 120.0


def _stall_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stalled(self: Any, shard: int) -> int:
        await asyncio.Event().wait()  # never set: cancelled when the dataset closes
        raise AssertionError("unreachable")

    monkeypatch.setattr(fetcher_mod.ShardFetcher, "fetch", stalled)


def _ids_within_guard(walk: Callable[[], list[int]]) -> list[int]:
    """``walk()`` on a thread of its own; its result, or a failure if it did not end."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["ids"] = walk()
        except BaseException as exc:  # re-raised below, in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    if "error" in out:
        raise out["error"]
    assert "ids" in out, "the walk waited for a fetch of a shard whose files were present"
    ids: list[int] = out["ids"]
    return ids


def _read_all(ds: StreamingDataset, workers: int) -> list[int]:
    """The sorted ids of a whole epoch of ``ds`` (in process, or by forked loader workers), within the
    guard; ``ds`` is closed after."""

    def walk() -> list[int]:
        if not workers:
            return [int(s["id"]) for s in ds]
        loader = StreamingDataLoader(ds, batch_size=5, num_workers=workers, multiprocessing_context="fork")
        return sorted(int(i) for batch in loader for i in batch["id"])

    try:
        return _ids_within_guard(walk)
    finally:
        ds.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_local_dataset_is_read_without_the_scheduler(
    make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    source = make_dataset(400)  # ~15 shards, and plan chunks of 5, 10, 20 ... samples: several slides
    _stall_fetches(monkeypatch)
    ds = StreamingDataset(local=str(source), batch_size=5)
    assert ds.num_shards >= 10
    assert _read_all(ds, workers) == list(range(400))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_warm_cache_is_read_without_the_scheduler(
    make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int
) -> None:
    remote = make_dataset(400, compression="zstd")  # the cache holds the decompressed files
    cache = tmp_path / "cache"
    first = StreamingDataset(remote=str(remote), local=str(cache), batch_size=5)
    try:
        assert [int(s["id"]) for s in first] == list(range(400))
    finally:
        first.close()
    _stall_fetches(monkeypatch)
    # A new dataset object: nothing of the first one's readiness carries over, only the files.
    ds = StreamingDataset(remote=str(remote), local=str(cache), batch_size=5)
    assert _read_all(ds, workers) == list(range(400))


def _epoch_ids(ds: StreamingDataset, workers: int, context: str | None) -> list[int]:
    """The sorted ids of one epoch of ``ds``, in process or through ``workers`` loader workers."""
    if not workers:
        return sorted(int(s["id"]) for s in ds)
    loader = StreamingDataLoader(ds, batch_size=5, num_workers=workers, multiprocessing_context=context)
    return sorted(int(i) for batch in loader for i in batch["id"])


WORKER_CASES = pytest.mark.parametrize(
    ("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")], ids=["0w", "2w-fork", "2w-spawn"]
)


@WORKER_CASES
def test_a_local_dataset_asks_the_scheduler_for_no_shard(
    make_dataset: MakeDataset, workers: int, context: str | None
) -> None:
    """A local-only stream's shards are source data, opened by the walk itself: no process asks the
    scheduler for one, so none is counted as fetched or found in a cache (each was a cache hit before)."""
    source = make_dataset(400)
    ds = StreamingDataset(local=str(source), batch_size=5)
    try:
        assert _epoch_ids(ds, workers, context) == list(range(400))
        stats = ds.stats()
    finally:
        ds.close()
    assert stats["processes"] >= 1 + workers  # the workers' counters are in the figures
    assert (stats["cache_hits"], stats["shards_downloaded"]) == (0, 0)


@WORKER_CASES
def test_a_missing_local_shard_is_still_named(
    make_dataset: MakeDataset, workers: int, context: str | None
) -> None:
    """The walk asks the scheduler for a local shard only when its file is missing: that fetch raises
    the error naming the file, in process and across loader workers."""
    source = make_dataset(400)
    victim = sorted(source.glob("shard.*.mds"))[4]
    victim.unlink()
    ds = StreamingDataset(local=str(source), batch_size=5)
    try:
        with pytest.raises(AstreamingError, match=victim.name.replace(".", r"\.")):
            _epoch_ids(ds, workers, context)
    finally:
        ds.close()


@WORKER_CASES
def test_a_local_stream_beside_a_remote_one(
    make_dataset: MakeDataset, tmp_path: Path, workers: int, context: str | None
) -> None:
    """Only the remote stream's shards are fetched (each downloaded once, into the cache); the local-only
    stream's are read where they are, in the same epoch, and never counted."""
    local = make_dataset(200)
    remote = make_dataset(200, first_id=200, compression="zstd")
    streams = [Stream(local=str(local)), Stream(remote=str(remote), local=str(tmp_path / "cache"))]
    ds = StreamingDataset(streams=streams, batch_size=5, shuffle=True)
    try:
        remote_shards = len(json.loads((remote / "index.json").read_text())["shards"])
        assert _epoch_ids(ds, workers, context) == list(range(400))
        stats = ds.stats()
    finally:
        ds.close()
    assert stats["shards_downloaded"] == remote_shards
    # Each process finds a remote shard another one brought in at most once (a loader's main process
    # reads the first batches while its workers start); a local shard is never a hit (counting them
    # would add one a local shard in every process that reads it).
    assert stats["cache_hits"] <= remote_shards * workers


def _count_fetches(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Each fetch the scheduler starts appends a line to ``log`` (in forked workers too)."""
    fetch = fetcher_mod.ShardFetcher.fetch

    async def counted(self: Any, shard: int) -> int:
        with log.open("a") as out:
            out.write(f"{shard}\n")
        return await fetch(self, shard)

    monkeypatch.setattr(fetcher_mod.ShardFetcher, "fetch", counted)


@WORKER_CASES
def test_a_warm_cache_asks_the_scheduler_only_for_the_missing_shard(
    make_dataset: MakeDataset,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    workers: int,
    context: str | None,
) -> None:
    """A shard of a remote already in the cache is opened by the walk and counted as a cache hit; the
    scheduler is asked only for the one whose file is gone, and downloads it (in every process)."""
    remote = make_dataset(400)
    cache = tmp_path / "cache"
    first = StreamingDataset(remote=str(remote), local=str(cache), batch_size=5)
    try:
        assert _epoch_ids(first, 0, None) == list(range(400))
    finally:
        first.close()
    cached = sorted(cache.glob("shard.*.mds"))
    assert len(cached) >= 10
    cached[6].unlink()
    log = tmp_path / "fetches.log"
    _count_fetches(monkeypatch, log)  # spawned workers do not inherit it: their counters say the same
    ds = StreamingDataset(remote=str(remote), local=str(cache), batch_size=5)
    try:
        assert _epoch_ids(ds, workers, context) == list(range(400))
        stats = ds.stats()
    finally:
        ds.close()
    assert stats["shards_downloaded"] == 1
    assert cached[6].exists()
    assert len(cached) - 1 <= stats["cache_hits"] <= (len(cached) - 1) * (1 + workers)
    if context != "spawn":
        fetched = log.read_text().split()
        assert fetched and set(fetched) == {fetched[0]}, fetched  # the missing shard, from any process
