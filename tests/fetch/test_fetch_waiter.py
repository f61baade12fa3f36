"""ShardWaiter: a sync consumer thread blocks on shard readiness and gets fetch errors raised to it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import multiprocessing as mp
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from astreaming.errors import HashMismatch
from astreaming.fetch.loop_thread import LoopThread, get_loop_thread
from astreaming.fetch.scheduler import FetchScheduler, FetchStatistics
from astreaming.fetch.waiter import ShardWaiter


class Fetch:
    """Sleeps ``delay`` per shard on the loop thread; records the thread and order; fails listed shards."""

    def __init__(self, delay: float, fail: dict[int, Exception] | None = None) -> None:
        self.delay = delay
        self.fail = fail or {}
        self.started: list[int] = []
        self.threads: set[int] = set()

    async def __call__(self, shard: int) -> int:
        self.started.append(shard)
        self.threads.add(threading.get_ident())
        await asyncio.sleep(self.delay)
        if shard in self.fail:
            raise self.fail[shard]
        return 10


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    thread = LoopThread(name="waiter-test-loop")
    yield thread
    thread.stop()


def make(lt: LoopThread, fetch: Fetch, **kwargs: float) -> ShardWaiter:
    async def build() -> FetchScheduler:
        return FetchScheduler(fetch, **kwargs)  # type: ignore[arg-type]

    return ShardWaiter(lt.call(build()), lt)


def test_wait_ready_blocks_until_the_shard_is_fetched(lt: LoopThread) -> None:
    gate = threading.Event()
    now = [10.0]

    async def fetch(shard: int) -> int:
        await asyncio.to_thread(gate.wait)  # the download finishes only when the test says so
        now[0] += 0.75  # ... and "took" 0.75 s of the injected clock
        return 10

    async def build() -> FetchScheduler:
        return FetchScheduler(fetch, max_in_flight=2)

    def clock() -> float:
        # Read first when the consumer starts waiting (past its fast path): only then may the
        # download finish, so the wait is certain to cover it.
        gate.set()
        return now[0]

    waiter = ShardWaiter(lt.call(build()), lt, clock=clock)
    waiter.wait_ready(0, 0)
    assert waiter.scheduler.is_ready(0)
    waiter.wait_ready(0, 0)  # ready: returns at once (fast path)
    stats = waiter.statistics()
    assert stats.waits == 2
    assert stats.wait_seconds == pytest.approx(0.75)
    sched_stats = lt.call(_stats(waiter))
    assert sched_stats.consumer_waits == 2
    assert sched_stats.shards_done == 1
    assert sched_stats.hits == 1


async def _stats(waiter: ShardWaiter) -> FetchStatistics:
    return waiter.scheduler.statistics()


def test_fetch_error_is_raised_in_the_consumer_thread(lt: LoopThread) -> None:
    error = HashMismatch("Checksum failure: shard.00002.mds (gs://b/shard.00002.mds)")
    waiter = make(lt, Fetch(delay=0.01, fail={2: error}))
    waiter.wait_ready(1, 0)
    with pytest.raises(HashMismatch, match=r"shard\.00002\.mds") as info:
        waiter.wait_ready(2, 1)
    assert info.value is error
    waiter.wait_ready(3, 2)  # later shards still work


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_advance_releases_the_look_ahead(lt: LoopThread) -> None:
    fetch = Fetch(delay=0.001)
    waiter = make(lt, fetch, max_in_flight=4, predownload=10)
    ahead = waiter.want(5, 50)
    waiter.wait_ready(0, 0)
    lt.call(_turns())  # the loop thread had every chance to start it: a wrong start would show now
    assert not ahead.done()
    assert fetch.started == [0]
    waiter.advance(45)
    ahead.result(5)
    assert fetch.started == [0, 5]


def test_random_access_from_the_consumer_jumps_the_queue(lt: LoopThread) -> None:
    release = threading.Event()
    started: list[int] = []

    async def fetch(shard: int) -> int:
        started.append(shard)
        if shard != 99:  # the plan's downloads hold the only slot until the test lets them go
            await asyncio.to_thread(release.wait)
        return 10

    async def build() -> FetchScheduler:
        return FetchScheduler(fetch, max_in_flight=1)

    waiter = ShardWaiter(lt.call(build()), lt)
    try:
        pending = [waiter.want(s, s) for s in range(1, 5)]
        waiter.wait_ready(99, -math.inf)  # returns while shard 1 still holds the slot
        assert sorted(started) == [1, 99]  # only the one already running went first
    finally:
        release.set()
    for f in pending:
        f.result(5)
    assert started == [1, 99, 2, 3, 4] or started == [99, 1, 2, 3, 4]


def test_timeout_raises_without_hanging(lt: LoopThread) -> None:
    waiter = make(lt, Fetch(delay=10))
    with pytest.raises(TimeoutError):
        waiter.wait_ready(0, 0, timeout=0.05)
    waiter.cancel_all()


def test_cancel_all_wakes_a_blocked_consumer(lt: LoopThread) -> None:
    waiter = make(lt, Fetch(delay=10))
    timer = threading.Timer(0.05, waiter.cancel_all)
    timer.start()
    with pytest.raises(concurrent.futures.CancelledError):
        waiter.wait_ready(0, 0, timeout=5)
    timer.join()


def _worker_after_fork(results: Any) -> None:
    try:
        lt = get_loop_thread()
        waiter = make(lt, Fetch(delay=0.01, fail={1: HashMismatch("Checksum failure: shard.00001.mds")}))
        waiter.wait_ready(0, 0)
        try:
            waiter.wait_ready(1, 1)
        except HashMismatch as exc:
            results.put(("raised", str(exc)))
        else:
            results.put(("no error", ""))
    except BaseException as exc:  # report anything else instead of hanging the parent
        results.put(("crash", repr(exc)))


def test_a_forked_worker_builds_its_own_loop_and_gets_errors(lt: LoopThread) -> None:
    # Like a DataLoader worker forked while the parent's loop thread runs.
    make(lt, Fetch(delay=0.001)).wait_ready(0, 0)
    get_loop_thread().call(asyncio.sleep(0))
    ctx: Any = mp.get_context("fork")
    results = ctx.Queue()
    proc = ctx.Process(target=_worker_after_fork, args=(results,))
    proc.start()
    outcome = results.get(timeout=30)
    proc.join(30)
    assert proc.exitcode == 0
    assert outcome == ("raised", "Checksum failure: shard.00001.mds")


def test_want_many_from_the_consumer_thread_with_numpy_arrays(lt: LoopThread) -> None:
    fetch = Fetch(delay=0.001)
    waiter = make(lt, fetch, max_in_flight=1, predownload=100)
    waiter.want_many(np.array([4, 2, 8], dtype=np.int64), np.array([20, 0, 10], dtype=np.int64))
    waiter.wait_ready(4, 20)
    assert fetch.started == [2, 8, 4]
    assert all(type(s) is int for s in fetch.started)
