"""FetchScheduler with a fake, sleep-based fetch: order, slots, look-ahead, urgency, cancel, errors, stats."""

from __future__ import annotations

import asyncio
import gc
import math
import random
from collections.abc import Callable

import pytest

from astreaming.errors import ConfigError, ObjectNotFound
from astreaming.fetch.scheduler import STRETCH_SHARDS, URGENT, FetchDeferred, FetchScheduler


class FakeFetch:
    """Records start order and concurrency; shards in ``gated`` wait for their gate to open."""

    def __init__(self, delay: float = 0.005, *, fail: dict[int, BaseException] | None = None) -> None:
        self.delay = delay
        self.fail = fail or {}
        self.gates: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.running = 0
        self.max_running = 0

    def gate(self, shard: int) -> asyncio.Event:
        return self.gates.setdefault(shard, asyncio.Event())

    async def __call__(self, shard: int) -> int:
        self.started.append(shard)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if shard in self.gates:
                await self.gates[shard].wait()
            else:
                await asyncio.sleep(self.delay)
            if shard in self.fail:
                raise self.fail[shard]
            self.finished.append(shard)
            return 1000 + shard
        except asyncio.CancelledError:
            self.cancelled.append(shard)
            raise
        finally:
            self.running -= 1


async def settle(n: int = 20) -> None:
    """Let the loop turn ``n`` times: the scheduler decides synchronously on each event, and a task it
    starts runs its first step one turn later, so a wrong start would show by then (no real time)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition (pytest-timeout bounds one that never comes), not for an amount of time."""
    while not predicate():
        await asyncio.sleep(0.001)


async def test_downloads_start_in_priority_order() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1) as sched:
        blocker = sched.want(100, 0)  # occupies the only slot while the others queue up
        fetch.gate(100)
        await settle()
        priorities = {1: 40, 2: 10, 3: 30, 4: 20, 5: 50}
        futures = [sched.want(shard, prio) for shard, prio in priorities.items()]
        fetch.gate(100).set()
        await asyncio.gather(blocker, *futures)
    assert fetch.started == [100, 2, 4, 3, 1, 5]


async def test_max_in_flight_is_respected() -> None:
    fetch = FakeFetch(delay=0.01)
    async with FetchScheduler(fetch, max_in_flight=3) as sched:
        futures = [sched.want(s, s) for s in range(10)]
        await settle()
        assert sched.statistics().in_flight == 3
        assert sched.statistics().queued == 7
        await asyncio.gather(*futures)
    assert fetch.max_running == 3
    assert sorted(fetch.finished) == list(range(10))


async def test_look_ahead_bound() -> None:
    fetch = FakeFetch(delay=0.001)
    async with FetchScheduler(fetch, max_in_flight=8, predownload=10) as sched:
        futures = {s: sched.want(s, prio) for s, prio in {0: 0, 1: 5, 2: 10, 3: 15, 4: 30}.items()}
        await asyncio.gather(futures[0], futures[1], futures[2])
        await settle()
        assert sorted(fetch.started) == [0, 1, 2]
        sched.advance(5)
        await futures[3]
        await settle()
        assert sorted(fetch.started) == [0, 1, 2, 3]
        sched.advance(3)  # going backwards changes nothing
        sched.advance(20)
        await futures[4]
    assert fetch.started == [0, 1, 2, 3, 4]


async def test_random_access_jumps_the_queue_and_the_look_ahead() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1, predownload=0, urgent_slots=0) as sched:
        fetch.gate(0)
        first = sched.want(0, 0)
        queued = [sched.want(s, 0) for s in (1, 2, 3)]
        far = sched.want(50, 1000)  # beyond the look-ahead: must not start by itself
        urgent = sched.want(77, -math.inf)
        await settle()
        fetch.gate(0).set()
        await asyncio.gather(first, urgent, *queued)
        await settle()
        assert not far.done()
        assert fetch.started == [0, 77, 1, 2, 3]
        sched.cancel(50)


async def test_wanting_again_with_an_earlier_position_moves_it_up() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1) as sched:
        fetch.gate(0)
        futures = [sched.want(0, 0), sched.want(1, 10), sched.want(2, 20), sched.want(3, 30)]
        assert sched.want(3, 5) is futures[3]  # same shared future
        sched.want(1, 50)  # a later position does not demote it
        fetch.gate(0).set()
        await asyncio.gather(*futures)
    assert fetch.started == [0, 3, 1, 2]


async def test_cancel_all_stops_what_is_no_longer_needed() -> None:
    fetch = FakeFetch()
    sched = FetchScheduler(fetch, max_in_flight=2)
    for s in (0, 1):
        fetch.gate(s)
    done = sched.want(9, -math.inf)
    fetch.gate(9)
    fetch.gate(9).set()
    await done
    futures = [sched.want(s, s) for s in range(6)]
    await settle()
    assert sorted(fetch.started) == [0, 1, 9]
    sched.cancel_all()
    assert all(f.cancelled() for f in futures)
    await settle()
    assert sorted(fetch.cancelled) == [0, 1]  # the running ones were cancelled
    assert sorted(fetch.started) == [0, 1, 9]  # the queued ones never started
    stats = sched.statistics()
    assert (stats.in_flight, stats.queued, stats.cancelled, stats.shards_done) == (0, 0, 6, 1)
    assert sched.is_ready(9)  # finished shards stay ready
    # After cancellation, wanting again starts a fresh attempt.
    again = sched.want(3, 0)
    await again
    assert sched.is_ready(3)
    await sched.aclose()


async def test_cancel_one_queued_shard() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1) as sched:
        fetch.gate(0)
        a, b, c = sched.want(0, 0), sched.want(1, 1), sched.want(2, 2)
        sched.cancel(1)
        assert b.cancelled()
        fetch.gate(0).set()
        await asyncio.gather(a, c)
    assert fetch.started == [0, 2]


async def test_failure_surfaces_on_the_right_future_only() -> None:
    error = ObjectNotFound("shard 3 missing", url="gs://bucket/shard.00003.mds")
    fetch = FakeFetch(fail={3: error})
    async with FetchScheduler(fetch, max_in_flight=2) as sched:
        futures = {s: sched.want(s, s) for s in range(6)}
        results = await asyncio.gather(*futures.values(), return_exceptions=True)
        assert [r is error for r in results] == [False, False, False, True, False, False]
        assert results.count(None) == 5
        stats = sched.statistics()
        assert (stats.failures, stats.shards_done) == (1, 5)
        assert not sched.is_ready(3)
        # The failure is not sticky: a later request tries again (the storage layer already retried).
        del fetch.fail[3]
        await sched.want(3, 0)
        assert sched.is_ready(3)
        assert fetch.started.count(3) == 2


async def test_failed_look_ahead_shard_nobody_awaits_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    fetch = FakeFetch(fail={1: OSError("boom")})
    async with FetchScheduler(fetch, max_in_flight=2) as sched:
        sched.want(1, 1)  # the future is dropped: nobody will ever look at its exception
        await sched.want(0, 0)
        while sched.statistics().failures != 1:  # a condition, not an amount of time
            await asyncio.sleep(0.001)
    del sched
    gc.collect()
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


class StepClock:
    """A fake clock that moves only when the fake fetch says a download took time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_statistics_count_bytes_hits_and_waits() -> None:
    clock = StepClock()
    fetch = FakeFetch()

    async def timed_fetch(shard: int) -> int:
        size = await fetch(shard)
        clock.now += 0.25  # each download "takes" 0.25 s of the injected clock
        return size

    async with FetchScheduler(timed_fetch, max_in_flight=4, clock=clock) as sched:
        await sched.wait(1, 0)
        await sched.wait(2, 1)
        await sched.wait(1, 0)  # already ready: a hit, no fetch
        stats = sched.statistics()
    assert fetch.started == [1, 2]
    assert stats.shards_done == 2
    assert stats.bytes_done == 1001 + 1002
    assert stats.hits == 1
    assert stats.consumer_waits == 3
    assert stats.consumer_wait_seconds == pytest.approx(0.5)  # two waits on a download, one hit


async def test_forget_makes_the_next_want_fetch_again() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch) as sched:
        await sched.want(4, 0)
        sched.readiness.forget(4)  # an eviction, reported to the one owner of readiness
        assert not sched.is_ready(4)
        await sched.want(4, 0)
    assert fetch.started == [4, 4]


async def test_leaving_the_context_cancels_running_fetches() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=2) as sched:
        fetch.gate(0)
        fetch.gate(1)
        futures = [sched.want(0, 0), sched.want(1, 1), sched.want(2, 2)]
        await settle()
    assert sorted(fetch.cancelled) == [0, 1]
    assert fetch.running == 0
    assert all(f.cancelled() for f in futures)
    with pytest.raises(RuntimeError, match="closed"):
        sched.want(5, 0)


async def test_cancelled_waiter_does_not_cancel_the_shared_download() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1) as sched:
        fetch.gate(0)
        waiter = asyncio.ensure_future(sched.wait(0, 0))
        await settle()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        fetch.gate(0).set()
        await sched.want(0, 0)
    assert fetch.cancelled == []
    assert fetch.finished == [0]


async def test_directly_cancelled_future_frees_its_slot() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1) as sched:
        fetch.gate(0)
        stuck = sched.want(0, 0)
        nxt = sched.want(1, 1)
        await settle()
        stuck.cancel()  # e.g. an unshielded awaiter was cancelled
        await asyncio.wait_for(nxt, 5)
    assert fetch.cancelled == [0]
    assert fetch.started == [0, 1]


def test_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        FetchScheduler(FakeFetch(), max_in_flight=0)
    with pytest.raises(ConfigError, match="predownload"):
        FetchScheduler(FakeFetch(), predownload=-1)


async def test_cancel_many_leaves_other_requests_alone() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1) as sched:
        fetch.gate(0)
        plan_a = [sched.want(s, s) for s in (0, 1, 2)]
        other = sched.want(7, 3)
        await settle()  # shard 0 is running, the others are queued
        sched.cancel_many([0, 1, 2])
        assert all(f.cancelled() for f in plan_a)
        await asyncio.wait_for(other, 5)
    assert fetch.started == [0, 7]
    assert fetch.cancelled == [0]


async def test_a_new_plan_is_bounded_by_the_look_ahead_again() -> None:
    fetch = FakeFetch(delay=0.001)
    async with FetchScheduler(fetch, predownload=10) as sched:
        sched.advance(500)  # the end of a previous epoch
        await sched.want(0, 500)
        sched.cancel_all()  # that iteration stopped: positions start over
        near, far = sched.want(1, 5), sched.want(2, 100)
        await near
        await settle()
        assert not far.done()
        sched.advance(95)
        await far
        sched.rewind(0)  # explicit rewind, without cancelling
        farther = sched.want(3, 50)
        await settle()
        assert not farther.done()
        sched.rewind(45)
        await farther
    assert fetch.started == [0, 1, 2, 3]


async def test_random_access_gets_an_extra_slot_when_the_window_is_full() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=2) as sched:
        plan = [sched.want(s, s) for s in range(4)]
        fetch.gate(0)
        fetch.gate(1)
        await settle()
        urgent = sched.want(77, URGENT)
        second_urgent = sched.want(78, URGENT)
        await asyncio.wait_for(urgent, 5)  # did not wait for the two gated plan downloads
        assert not plan[0].done() and not plan[1].done()
        assert sched.statistics().in_flight >= 2
        await asyncio.wait_for(second_urgent, 5)
        assert fetch.max_running == 3  # one extra slot, not more
        fetch.gate(0).set()
        fetch.gate(1).set()
        await asyncio.gather(*plan)
    assert fetch.started[:2] == [0, 1]
    assert fetch.started[2:4] == [77, 78]


async def test_want_many_queues_a_plan_lazily_in_priority_order() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=1, predownload=25) as sched:
        sched.want_many([5, 3, 9, 1], [30, 10, 20, 0])
        await sched.wait(3, 10)
        assert fetch.started[:2] == [1, 3]
        await settle()
        assert fetch.started == [1, 3, 9]  # 5 (position 30) is beyond the look-ahead
        sched.advance(10)
        await sched.wait(5, 30)
    assert fetch.started == [1, 3, 9, 5]


async def test_look_ahead_failure_is_reported_once_then_retried() -> None:
    error = ObjectNotFound("no such object", url="s3://b/shard.00002.mds")
    fetch = FakeFetch(fail={2: error})
    async with FetchScheduler(fetch, max_in_flight=4) as sched:
        sched.want_many([1, 2], [0, 1])
        await sched.wait(1, 0)
        await until(lambda: sched.statistics().failures == 1)  # shard 2 failed; nobody held its future
        with pytest.raises(ObjectNotFound, match="no such object"):
            await sched.wait(2, 1)
        assert fetch.started.count(2) == 1  # the error was handed over, not re-fetched
        del fetch.fail[2]
        await sched.wait(2, 1)  # asking again tries again
        assert fetch.started.count(2) == 2


async def test_stopping_an_iteration_drops_unreported_failures() -> None:
    fetch = FakeFetch(fail={2: OSError("flaky")})
    async with FetchScheduler(fetch, max_in_flight=4) as sched:
        sched.want_many([2], [0])
        await until(lambda: sched.statistics().failures == 1)
        sched.cancel_all()
        del fetch.fail[2]
        await sched.wait(2, 0)  # a fresh iteration starts clean
    assert fetch.started == [2, 2]


@pytest.mark.parametrize("seed", range(6))
async def test_random_operations_keep_the_invariants(seed: int) -> None:
    rnd = random.Random(seed)
    position = 0.0
    look_ahead = 20.0
    started_at: list[tuple[int, float]] = []
    running = 0
    peak = 0
    priorities: dict[int, float] = {}

    async def fetch(shard: int) -> int:
        nonlocal running, peak
        started_at.append((shard, position))
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(rnd.random() * 0.003)
            if rnd.random() < 0.1:
                raise OSError(f"failed {shard}")
            return 1
        finally:
            running -= 1

    futures: dict[int, asyncio.Future[None]] = {}
    async with FetchScheduler(fetch, max_in_flight=3, predownload=look_ahead, urgent_slots=1) as sched:
        for _ in range(150):
            op = rnd.random()
            shard = rnd.randrange(40)
            if op < 0.5:
                prio = URGENT if rnd.random() < 0.1 else position + rnd.randrange(60)
                priorities[shard] = min(priorities.get(shard, math.inf), prio)
                futures[shard] = sched.want(shard, prio)
            elif op < 0.7:
                position += rnd.randrange(10)
                sched.advance(position)
            elif op < 0.8:
                sched.cancel(shard)
            else:
                await asyncio.sleep(0.001)
            assert sched.statistics().in_flight <= 4
        position = math.inf
        sched.advance(position)
        _, pending = await asyncio.wait(list(futures.values()), timeout=10)
        assert not pending, "every wanted shard ends ready, failed or cancelled"
        stats = sched.statistics()
        assert (stats.in_flight, stats.queued) == (0, 0)
    assert peak <= 4
    for shard, pos in started_at:
        # A fetch only starts within the look-ahead of the position at that moment (or when urgent).
        assert priorities[shard] <= pos + look_ahead or priorities[shard] == URGENT or pos == math.inf


async def test_head_first_gives_the_needed_shard_the_link_alone() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=4, head_first=True) as sched:
        for shard in range(5):
            fetch.gate(shard)
        futures = [sched.want(s, s * 10) for s in range(6)]
        await settle()
        assert fetch.started == [0]  # the consumer waits for shard 0: nothing shares its link
        fetch.gate(0).set()
        await futures[0]
        await settle()
        assert sorted(fetch.started) == [0, 1, 2, 3, 4]  # then the look-ahead window fills up
        sched.advance(20)  # the consumer reached shard 2, still downloading: no new starts
        for shard in (1, 3, 4):
            fetch.gate(shard).set()
        await asyncio.gather(futures[1], futures[3], futures[4])
        await settle()
        assert 5 not in fetch.started
        fetch.gate(2).set()
        await asyncio.gather(*futures)
    assert fetch.started == [0, 1, 2, 3, 4, 5]


async def test_a_deferred_lookahead_is_requeued_and_pauses_further_lookahead() -> None:
    """A look-ahead fetch that finds no room raises FetchDeferred: not a failure; farther shards wait."""
    attempts: dict[int, int] = {}
    room = asyncio.Event()

    async def fetch(shard: int) -> int:
        attempts[shard] = attempts.get(shard, 0) + 1
        if shard >= 10 and not room.is_set():
            raise FetchDeferred(shard)
        await asyncio.sleep(0)
        return shard

    # A long retry timer: only the consumer's advance resumes look-ahead in this test.
    async with FetchScheduler(fetch, max_in_flight=1, predownload=100, defer_retry=3600) as sched:
        sched.want_many([0, 10, 20], [0, 10, 20])
        await sched.wait(0, 0)
        await settle()
        assert attempts.get(10) == 1 and 20 not in attempts  # paused after 10 was deferred
        assert not sched.is_ready(10) and sched.statistics().failures == 0
        assert sched.distance(10) == 10
        room.set()
        sched.advance(1)  # the consumer moved: look-ahead resumes
        await sched.wait(10, 10)
        await sched.wait(20, 20)
        assert attempts[10] == 2 and attempts[20] == 1
        assert sched.distance(20) == 0.0  # ready shards are no longer queued


async def test_a_deferred_lookahead_retries_after_the_timer() -> None:
    tries: list[int] = []

    async def fetch(shard: int) -> int:
        tries.append(shard)
        if len(tries) == 1:
            raise FetchDeferred(shard)
        return shard

    async with FetchScheduler(fetch, max_in_flight=2, predownload=100, defer_retry=0.001) as sched:
        sched.want_many([5], [5])
        await sched.wait(5, 5)  # no advance needed: the retry timer resumed the look-ahead
        assert tries == [5, 5]


async def test_a_running_lookahead_needed_now_is_not_deferred_forever() -> None:
    """The consumer asks for a shard whose look-ahead fetch is running and then gets deferred: it comes
    back as the shard the consumer waits for (distance 0), not as a paused look-ahead."""
    gate = asyncio.Event()
    distances: list[float] = []

    async def fetch(shard: int) -> int:
        distance = sched.distance(shard)
        distances.append(distance)
        await gate.wait()
        if distance > 0:
            raise FetchDeferred(shard)
        return shard

    async with FetchScheduler(fetch, max_in_flight=2, predownload=100, defer_retry=3600) as sched:
        sched.want_many([7], [50])
        await settle()
        assert distances == [50]  # running as a look-ahead
        waiting = asyncio.ensure_future(sched.wait(7, 0))  # the consumer needs it now
        await settle()
        gate.set()
        await waiting
        assert distances == [50, 0]


async def test_head_first_lets_lookahead_use_a_link_with_room() -> None:
    """Once the running downloads leave the link room (``spare``), look-ahead starts beside the head."""
    fetch = FakeFetch()
    room = [False]
    async with FetchScheduler(
        fetch, max_in_flight=4, predownload=100, head_first=True, spare=lambda: room[0]
    ) as sched:
        for shard in range(3):
            fetch.gate(shard)
        futures = [sched.want(s, s * 10) for s in range(3)]
        await settle()
        assert fetch.started == [0]  # the head keeps the link busy: it downloads alone
        room[0] = True  # e.g. its last parts are in flight and connections idle
        sched.pump()
        await settle()
        assert fetch.started == [0, 1, 2]
        for shard in range(3):
            fetch.gate(shard).set()
        await asyncio.gather(*futures)


async def test_stretch_starts_shards_beyond_the_lookahead_while_the_link_has_room() -> None:
    fetch = FakeFetch()
    room = [False]
    n = STRETCH_SHARDS + 3
    async with FetchScheduler(
        fetch, max_in_flight=8, predownload=5, head_first=True, spare=lambda: room[0], stretch=True
    ) as sched:
        for shard in range(n):
            fetch.gate(shard)
        futures = [sched.want(s, s * 100) for s in range(n)]  # shards far longer than the look-ahead
        await settle()
        assert fetch.started == [0]
        room[0] = True
        sched.pump()
        await settle()
        first = list(range(STRETCH_SHARDS + 1))
        assert fetch.started == first  # STRETCH_SHARDS beyond the window, not all of them
        for shard in first:
            fetch.gate(shard).set()
        await asyncio.gather(*futures[: len(first)])
        await settle()
        assert fetch.started == first  # ready but still beyond the window: nothing more yet
        sched.advance(96)  # the window reaches shard 1: one more may stretch
        await settle()
        assert fetch.started == [*first, len(first)]
        sched.advance(100 * n)
        for shard in range(len(first), n):
            fetch.gate(shard).set()
        await asyncio.gather(*futures)


async def test_no_stretch_without_room_or_when_not_asked() -> None:
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=4, predownload=5, spare=lambda: False, stretch=True) as s1:
        futures = [s1.want(s, s * 100) for s in range(3)]
        await asyncio.gather(futures[0])
        await settle()
        assert fetch.started == [0]  # the link is busy: the window holds
        s1.advance(300)
        await asyncio.gather(*futures)
    fetch = FakeFetch()
    async with FetchScheduler(fetch, max_in_flight=4, predownload=5, spare=lambda: True) as s2:
        futures = [s2.want(s, s * 100) for s in range(3)]
        await asyncio.gather(futures[0])
        await settle()
        assert fetch.started == [0]  # stretch not asked for (predownload was chosen): the window holds
        s2.advance(300)
        await asyncio.gather(*futures)


def test_statistics_from_another_thread_while_the_loop_cancels_a_plan() -> None:
    """The consumer thread reads the counters as its walk ends (``stats()``, a DataLoader worker's
    figures) while the loop thread cancels the plan's queued shards: reading them must not iterate the
    dict the loop is changing ("dictionary changed size during iteration")."""
    import sys
    import threading

    from astreaming.fetch.loop_thread import LoopThread

    loop_thread = LoopThread("test-stats-loop")
    fetch = FakeFetch()
    sched = loop_thread.call(_make_scheduler(fetch))
    stop = threading.Event()

    async def churn() -> None:
        # A plan of many shards beyond the look-ahead (all queued), wanted and cancelled over and over.
        shards = list(range(1000, 3000))
        while not stop.is_set():
            sched.want_many(shards, [1e9] * len(shards))
            await asyncio.sleep(0)
            sched.cancel_many(shards)
            await asyncio.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows at once
    churning = loop_thread.run(churn())
    try:
        for _ in range(300):
            sched.statistics()  # raised RuntimeError before the fix
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        churning.result(60)
        loop_thread.call(sched.aclose())
        loop_thread.stop()


async def _make_scheduler(fetch: FakeFetch) -> FetchScheduler:
    return FetchScheduler(fetch, max_in_flight=1, predownload=0)
