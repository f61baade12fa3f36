"""The retry policy: attempts, jittered backoff, Retry-After, per-attempt timeout; no real sleeping."""

from __future__ import annotations

import asyncio
import random

import pytest

from astreaming.errors import ConfigError, ObjectNotFound, PermissionDenied, TransientStorageError
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries

URL = "https://user:hunter2@example.com/data/shard.mds?X-Amz-Signature=abc123"


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(failures: list[BaseException], result: str = "ok") -> tuple[list[int], object]:
    calls = [0]

    async def op() -> str:
        calls[0] += 1
        if failures:
            raise failures.pop(0)
        return result

    return calls, op


def policy(t: FakeTime, **kw: object) -> RetryPolicy:
    return RetryPolicy(clock=t.clock, sleep=t.sleep, rng=random.Random(7), **kw)  # type: ignore[arg-type]


async def test_succeeds_after_transient_failures() -> None:
    t = FakeTime()
    calls, op = flaky([TransientStorageError("503"), TransientStorageError("reset")])
    stats = RetryStats()
    assert await with_retries(policy(t, attempts=3), op, url=URL, stats=stats) == "ok"  # type: ignore[arg-type]
    assert calls == [3]
    assert (stats.calls, stats.attempts, stats.retries, stats.failures) == (1, 3, 2, 0)
    assert len(t.sleeps) == 2


async def test_full_jitter_stays_within_exponential_bounds() -> None:
    t = FakeTime()
    p = policy(t, attempts=9, base=0.5, cap=4.0)
    _, op = flaky([TransientStorageError("x") for _ in range(8)])
    await with_retries(p, op, url=URL)  # type: ignore[arg-type]
    bounds = [min(4.0, 0.5 * 2**i) for i in range(8)]
    assert all(0.0 <= s <= b for s, b in zip(t.sleeps, bounds, strict=True)), (t.sleeps, bounds)
    assert len(set(t.sleeps)) == 8  # jittered, not constant
    # Without jitter the sleeps are exactly the bounds.
    t2 = FakeTime()
    _, op2 = flaky([TransientStorageError("x") for _ in range(8)])
    await with_retries(policy(t2, attempts=9, base=0.5, cap=4.0, jitter="none"), op2, url=URL)  # type: ignore[arg-type]
    assert t2.sleeps == bounds


async def test_full_jitter_spreads_over_the_whole_interval() -> None:
    p = RetryPolicy(base=1.0, cap=100.0, rng=random.Random(1))
    draws = [p.backoff(3) for _ in range(2000)]  # bound 4 s
    assert 0.0 <= min(draws) < 0.2 and 3.8 < max(draws) <= 4.0


async def test_retry_after_is_honoured_and_capped() -> None:
    t = FakeTime()
    failures: list[BaseException] = [
        TransientStorageError("429", retry_after=7.0),
        TransientStorageError("503", retry_after=10_000.0),
    ]
    _, op = flaky(failures)
    await with_retries(policy(t, attempts=3, base=0.01, max_retry_after=60.0), op, url=URL)  # type: ignore[arg-type]
    assert t.sleeps == [7.0, 60.0]


async def test_exhausted_attempts_raise_typed_error_naming_url() -> None:
    t = FakeTime()
    last = TransientStorageError("HTTP 503 the third time", retry_after=2.0)
    calls, op = flaky(
        [TransientStorageError("a"), TransientStorageError("b"), last, TransientStorageError("d")]
    )
    stats = RetryStats()
    with pytest.raises(TransientStorageError) as info:
        await with_retries(policy(t, attempts=3), op, url=URL, stats=stats, what="download")  # type: ignore[arg-type]
    assert calls == [3]
    msg = str(info.value)
    assert "3 attempt(s)" in msg and "third time" in msg and "download" in msg
    assert "example.com/data/shard.mds" in msg and "hunter2" not in msg and "abc123" not in msg
    assert info.value.__cause__ is last
    assert f"in {sum(t.sleeps):.2f} s" in msg  # elapsed time comes from the injected clock
    assert (stats.failures, stats.attempts) == (1, 3)


@pytest.mark.parametrize(
    "error", [ObjectNotFound("404"), PermissionDenied("403"), ConfigError("bad"), KeyError("k")]
)
async def test_non_retryable_errors_are_raised_at_once(error: BaseException) -> None:
    t = FakeTime()
    calls, op = flaky([error])
    with pytest.raises(type(error)):
        await with_retries(policy(t, attempts=5), op, url=URL)  # type: ignore[arg-type]
    assert calls == [1] and t.sleeps == []


@pytest.mark.timeout(10)
async def test_every_attempt_is_bounded_by_the_timeout() -> None:
    t = FakeTime()
    calls = [0]

    async def stalls() -> str:
        calls[0] += 1
        await asyncio.Event().wait()  # a stalled connection
        return "never"

    stats = RetryStats()
    # The attempts never end by themselves: only the per-attempt timeout can end them (a hang is caught
    # by the timeout mark above, not by a wall-clock assertion).
    with pytest.raises(TransientStorageError, match=r"timed out after 0\.05 s"):
        await with_retries(policy(t, attempts=3, timeout=0.05), stalls, url=URL, stats=stats)
    assert calls == [3] and stats.timeouts == 3


@pytest.mark.timeout(10)
async def test_timeout_then_success() -> None:
    t = FakeTime()
    calls = [0]

    async def slow_then_fast() -> str:
        calls[0] += 1
        if calls[0] == 1:
            await asyncio.sleep(30)
        return "done"

    assert await with_retries(policy(t, attempts=2, timeout=0.05), slow_then_fast, url=URL) == "done"


@pytest.mark.timeout(10)
async def test_cancellation_is_not_retried() -> None:
    started = asyncio.Event()

    async def op() -> str:
        started.set()
        await asyncio.sleep(30)
        return "x"

    stats = RetryStats()
    task = asyncio.ensure_future(with_retries(RetryPolicy(attempts=5), op, url=URL, stats=stats))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stats.attempts == 1


def test_download_retry_means_retries_after_the_first_attempt() -> None:
    assert RetryPolicy.from_download_retry(0).attempts == 1  # mosaic 0.13 crashed on 0
    assert RetryPolicy.from_download_retry(2).attempts == 3
    assert RetryPolicy.from_download_retry(2, 7.5).timeout == 7.5
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="download_retry"):
            RetryPolicy.from_download_retry(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="download_timeout"):
        RetryPolicy.from_download_retry(1, 0)
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(jitter="equal")  # type: ignore[arg-type]
