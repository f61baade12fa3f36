"""Atomic publish across real processes (fork and spawn): one producer, no partial reads, crash recovery."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing as mp
import os
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import pytest

from astreaming.cache.publish import FileLock, ensure_file, lock_path
from astreaming.errors import CacheError

CHUNKS = 16
CHUNK = 4096


def payload() -> bytes:
    return b"".join(hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32) for i in range(CHUNKS))


async def _slow_write(tmp: Path, log: str | None, crash_after: int | None = None) -> None:
    if log is not None:
        with open(log, "a") as f:  # O_APPEND: one short line per producer, no interleaving
            f.write(f"{os.getpid()}\n")
    data = payload()
    with open(tmp, "wb") as f:
        for i in range(CHUNKS):
            if crash_after is not None and i == crash_after:
                f.flush()
                os._exit(3)
            f.write(data[i * CHUNK : (i + 1) * CHUNK])
            f.flush()
            await asyncio.sleep(0.003)


def race_worker(path: str, log: str, go: Any, results: Any) -> None:
    go.wait()  # a barrier: every producer starts at the same moment, even under spawn
    produced = asyncio.run(ensure_file(Path(path), lambda tmp: _slow_write(tmp, log)))
    results.put((produced, Path(path).read_bytes() == payload()))


def reader_worker(path: str, stop: EventType, results: Any) -> None:
    seen = bad = 0
    p = Path(path)
    # Reads at least once after the producers are done (stop is set then), however late this process
    # got going on a loaded machine: never a test that passes because a reader had not started yet.
    while not stop.is_set() or not seen:
        if p.exists():
            seen += 1
            bad += p.read_bytes() != payload()
        else:
            time.sleep(0.0005)
    results.put((seen, bad))


def crash_worker(path: str, started: EventType | None, hold: float) -> None:
    async def produce(tmp: Path) -> None:
        if started is not None:
            started.set()
        await asyncio.sleep(hold)
        await _slow_write(tmp, None, crash_after=CHUNKS // 2)

    asyncio.run(ensure_file(Path(path), produce))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_racing_processes_produce_once_and_readers_never_see_partial(tmp_path: Path, method: str) -> None:
    ctx: Any = mp.get_context(method)
    target = tmp_path / "sub" / "shard.00000.mds"
    log = tmp_path / "producers.log"
    go, stop = ctx.Barrier(4), ctx.Event()
    results, reads = ctx.Queue(), ctx.Queue()
    readers = [ctx.Process(target=reader_worker, args=(str(target), stop, reads)) for _ in range(2)]
    producers = [ctx.Process(target=race_worker, args=(str(target), str(log), go, results)) for _ in range(4)]
    for p in readers + producers:
        p.start()
    outcomes = [results.get(timeout=60) for _ in producers]
    for p in producers:
        p.join(30)
        assert p.exitcode == 0
    stop.set()
    observed = [reads.get(timeout=30) for _ in readers]
    for p in readers:
        p.join(30)
        assert p.exitcode == 0

    assert sorted(produced for produced, _ in outcomes) == [False, False, False, True]
    assert all(ok for _, ok in outcomes)
    assert len(log.read_text().split()) == 1  # produce() ran exactly once
    assert all(seen > 0 for seen, _ in observed)  # the readers did look at the file
    assert sum(bad for _, bad in observed) == 0
    assert target.read_bytes() == payload()
    assert sorted(os.listdir(target.parent)) == ["shard.00000.mds"]  # no temp or lock file left


@pytest.mark.parametrize("method", ["fork", "spawn"])
async def test_crashed_producer_leaves_nothing_and_next_succeeds(tmp_path: Path, method: str) -> None:
    ctx: Any = mp.get_context(method)
    target = tmp_path / "shard.00001.mds"
    proc = ctx.Process(target=crash_worker, args=(str(target), None, 0.0))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 3
    assert not target.exists()
    leftovers = [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert leftovers, "the crashed producer should have left its temp file"

    produced = await ensure_file(target, lambda tmp: _slow_write(tmp, None))
    assert produced is True
    assert target.read_bytes() == payload()
    assert sorted(os.listdir(tmp_path)) == ["shard.00001.mds"]


async def test_waiter_takes_over_when_lock_holder_dies(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    target = tmp_path / "shard.00002.mds"
    started = ctx.Event()
    proc = ctx.Process(target=crash_worker, args=(str(target), started, 0.3))
    proc.start()
    assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
    assert lock_path(target).exists()
    calls = 0

    async def produce(tmp: Path) -> None:
        nonlocal calls
        calls += 1
        assert not proc.is_alive(), "we must only get the lock once the holder is dead"
        await _slow_write(tmp, None)

    assert await asyncio.wait_for(ensure_file(target, produce), 30) is True
    proc.join(10)
    assert proc.exitcode == 3
    assert calls == 1
    assert target.read_bytes() == payload()
    assert sorted(os.listdir(tmp_path)) == ["shard.00002.mds"]


async def test_existing_file_is_a_hit_without_calling_produce(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("{}")

    async def produce(tmp: Path) -> None:
        raise AssertionError("must not be called")

    assert await ensure_file(target, produce) is False
    assert target.read_text() == "{}"


async def test_failing_producer_cleans_up_and_propagates(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "shard.mds"

    async def produce(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        tmp.with_name(tmp.name + ".part").write_bytes(b"x")  # as a storage backend would leave it
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        await ensure_file(target, produce)
    assert os.listdir(target.parent) == []
    # And the lock is free again: a second attempt succeeds.
    assert await ensure_file(target, lambda tmp: _slow_write(tmp, None)) is True


async def test_cancelled_producer_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "shard.mds"
    started = asyncio.Event()

    async def produce(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        started.set()
        await asyncio.sleep(60)

    task = asyncio.ensure_future(ensure_file(target, produce))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.listdir(tmp_path) == []


async def test_producer_that_writes_nothing_is_a_cache_error(tmp_path: Path) -> None:
    target = tmp_path / "shard.mds"

    async def produce(tmp: Path) -> None:
        return None

    with pytest.raises(CacheError, match=r"shard\.mds"):
        await ensure_file(target, produce)
    assert not target.exists()


async def test_concurrent_tasks_in_one_process_produce_once(tmp_path: Path) -> None:
    target = tmp_path / "shard.mds"
    calls = 0

    async def produce(tmp: Path) -> None:
        nonlocal calls
        calls += 1
        await _slow_write(tmp, None)

    results = await asyncio.gather(*(ensure_file(target, produce) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert calls == 1


def test_lock_on_an_unlinked_file_is_not_held(tmp_path: Path) -> None:
    target = tmp_path / "f"
    first = FileLock(target)
    assert first.try_acquire()
    second = FileLock(target)
    assert not second.try_acquire()  # held by `first`
    first.release()
    assert not lock_path(target).exists()
    assert second.try_acquire()  # a fresh lock file, really exclusive
    third = FileLock(target)
    assert not third.try_acquire()
    second.release()


def test_lock_taken_on_a_file_its_holder_unlinked_is_refused(tmp_path: Path) -> None:
    # The race the inode check closes: B opens the lock file, A releases (unlink + unlock), B's flock
    # then succeeds on a file nobody else will ever open again, while C locks the new file.
    target = tmp_path / "f"
    a = FileLock(target)
    assert a.try_acquire()
    stale_fd = os.open(lock_path(target), os.O_RDWR)
    a.release()
    c = FileLock(target)
    assert c.try_acquire()
    b = FileLock(target)
    assert b._try_lock_fd(stale_fd) is False
    c.release()
