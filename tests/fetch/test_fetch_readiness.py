"""Readiness, the one owner of "which shards are ready": what the scheduler records and consults, what an
eviction or a consumer's discovery forgets (from any thread), and the readers consumers must close."""

from __future__ import annotations

import asyncio
import threading

from astreaming.fetch.readiness import Readiness
from astreaming.fetch.scheduler import FetchScheduler


class CountingFetch:
    def __init__(self) -> None:
        self.started: list[int] = []

    async def __call__(self, shard: int) -> int:
        self.started.append(shard)
        await asyncio.sleep(0)
        return 0


def test_ready_until_forgotten_and_each_forgotten_shard_is_taken_once() -> None:
    r = Readiness()
    assert not r.is_ready(3)
    r.mark_ready(3)
    r.mark_ready(5)
    assert r.is_ready(3) and r.is_ready(5)
    r.forget(3)
    r.forget(7)  # never ready (evicted before this process fetched it): nothing to undo, readers dropped
    assert not r.is_ready(3) and r.is_ready(5)
    assert r.take_forgotten() == [3, 7]
    assert r.take_forgotten() == []  # a second consumer finds nothing left: each is taken once
    r.mark_ready(3)  # fetched again
    assert r.is_ready(3)


def test_a_forget_from_another_thread_takes_effect_at_once() -> None:
    # The budget reports evictions on its ledger thread: no hop through the loop, no delay.
    r = Readiness()
    r.mark_ready(1)
    thread = threading.Thread(target=r.forget, args=(1,))
    thread.start()
    thread.join()
    assert not r.is_ready(1)
    assert r.take_forgotten() == [1]


async def test_the_scheduler_records_fetches_in_the_readiness_it_was_given() -> None:
    readiness = Readiness()
    fetch = CountingFetch()
    async with FetchScheduler(fetch, readiness=readiness) as sched:
        assert sched.readiness is readiness
        await sched.want(2, 0)
        assert readiness.is_ready(2) and sched.is_ready(2)
        await sched.want(2, 0)  # ready: no second fetch
        assert fetch.started == [2]
        readiness.forget(2)  # e.g. the cache budget evicted it
        assert not sched.is_ready(2)
        await sched.want(2, 0)
        assert fetch.started == [2, 2]


async def test_want_many_skips_what_the_owner_says_is_ready() -> None:
    readiness = Readiness()
    readiness.mark_ready(1)  # another consumer of the same runtime had it fetched
    fetch = CountingFetch()
    async with FetchScheduler(fetch, readiness=readiness) as sched:
        sched.want_many([0, 1, 2], [0, 1, 2])
        await sched.want(2, 2)
        await sched.want(0, 0)
    assert sorted(fetch.started) == [0, 2]


async def test_each_scheduler_has_its_own_readiness_by_default() -> None:
    fetch = CountingFetch()
    async with FetchScheduler(fetch) as a, FetchScheduler(fetch) as b:
        await a.want(4, 0)
        assert a.is_ready(4) and not b.is_ready(4)
