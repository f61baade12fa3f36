"""gs, s3 and http backends through the fault-injecting proxy (astreaming.testing.faultproxy).

Each fault kind (5xx/429 with Retry-After, reset mid-body, truncated body, stall) is survived within the
retry budget with identical bytes; without retries each fails with a typed error and leaves no ``.part``;
exhausting the retries takes about ``download_timeout x attempts``; a 404 is tried once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from storage_cases import GCS_BUCKET, S3_BUCKET, gcs_put

from astreaming.errors import ObjectNotFound, TransientStorageError
from astreaming.storage.base import Backend
from astreaming.storage.gcs import GCSBackend
from astreaming.storage.http import HTTPBackend
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries
from astreaming.storage.s3 import S3Backend
from astreaming.testing.faultproxy import FaultProxy
from astreaming.testing.faults import FaultPlan

pytestmark = pytest.mark.timeout(120)
SIZES = (1, 70_000, 1_500_000)


@dataclass
class Target:
    """One backend behind the proxy: its base URL (as seen through the proxy) and object contents."""

    name: str
    base: str
    contents: dict[str, bytes]
    make: Callable[[float], Backend]


def blob_gets(request: object) -> bool:
    return getattr(request, "method", "") == "GET" and "blob-" in getattr(request, "path", "")


@pytest.fixture(params=["gs", "s3", "http"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Target, FaultProxy]]:
    name = request.param
    prefix = uuid.uuid4().hex[:12]
    contents = {f"blob-{n}.bin": random.Random(n).randbytes(n) for n in SIZES}
    if name == "gs":
        server = request.getfixturevalue("gcs_server")
        for key, data in contents.items():
            gcs_put(server, GCS_BUCKET, f"{prefix}/{key}", data)
        upstream = server.url
    elif name == "s3":
        server = request.getfixturevalue("s3_server")
        request.getfixturevalue("aws_env")
        client = server.client()
        for key, data in contents.items():
            client.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/{key}", Body=data)
        client.close()
        upstream = server.url
    else:
        server = request.getfixturevalue("http_server")
        root = request.getfixturevalue("http_root") / prefix
        root.mkdir()
        for key, data in contents.items():
            (root / key).write_bytes(data)
        upstream = server.url
    async with FaultProxy(upstream) as proxy:
        if name == "gs":
            t = Target(
                name,
                f"gs://{GCS_BUCKET}/{prefix}",
                contents,
                lambda to: GCSBackend(emulator_host=proxy.url, timeout=to),
            )
        elif name == "s3":
            t = Target(
                name,
                f"s3://{S3_BUCKET}/{prefix}",
                contents,
                lambda to: S3Backend(endpoint_url=proxy.url, timeout=to),
            )
        else:
            t = Target(name, f"{proxy.url}/{prefix}", contents, lambda to: HTTPBackend(timeout=to))
        yield t, proxy


async def test_error_status_is_transient_with_retry_after(target: tuple[Target, FaultProxy]) -> None:
    t, proxy = target
    proxy.plan = FaultPlan(error_rate=1.0, error_statuses=(503,), retry_after=3, match=blob_gets)
    async with t.make(10) as b:
        with pytest.raises(TransientStorageError) as info:
            await b.read_bytes(f"{t.base}/blob-1.bin")
    assert info.value.retry_after == 3
    assert proxy.stats.requests == 1  # no hidden retries in the client


@pytest.mark.parametrize("fault", ["truncate", "reset"])
async def test_broken_body_fails_cleanly(
    target: tuple[Target, FaultProxy], fault: str, tmp_path: Path
) -> None:
    t, proxy = target
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"previous copy")
    proxy.plan = FaultPlan(**{f"{fault}_rate": 1.0}, match=blob_gets)  # type: ignore[arg-type]
    async with t.make(10) as b:
        with pytest.raises(TransientStorageError, match=r"blob-1500000\.bin"):
            await b.download(f"{t.base}/blob-1500000.bin", dest)
        assert dest.read_bytes() == b"previous copy"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]  # no .part left
        proxy.plan = FaultPlan()
        assert await b.download(f"{t.base}/blob-1500000.bin", dest) == 1_500_000
    assert dest.read_bytes() == t.contents["blob-1500000.bin"]
    assert proxy.stats.faults >= 1


@pytest.mark.parametrize("fault", ["truncate", "reset"])
async def test_broken_range_body_fails_cleanly(target: tuple[Target, FaultProxy], fault: str) -> None:
    """A range streamed to a sink whose body breaks raises TransientStorageError (retried by the caller),
    never returns a short count as if the range were complete."""
    t, proxy = target
    proxy.plan = FaultPlan(**{f"{fault}_rate": 1.0}, match=blob_gets)  # type: ignore[arg-type]
    got = bytearray()

    async def sink(chunk: bytes) -> None:
        got.extend(chunk)

    url = f"{t.base}/blob-1500000.bin"
    async with t.make(10) as b:
        with pytest.raises(TransientStorageError, match=r"blob-1500000\.bin"):
            await b.read_range_into(url, 0, 1_400_000, sink)
        proxy.plan = FaultPlan()
        got.clear()
        assert await b.read_range_into(url, 0, 1_400_000, sink) == 1_400_000
    assert bytes(got) == t.contents["blob-1500000.bin"][:1_400_000]
    assert proxy.stats.faults >= 1


async def test_every_fault_survived_with_retries(target: tuple[Target, FaultProxy], tmp_path: Path) -> None:
    t, proxy = target
    proxy.plan = FaultPlan(
        error_rate=0.25,
        error_statuses=(500, 503, 429),
        retry_after=0.01,
        reset_rate=0.1,
        truncate_rate=0.1,
        stall_rate=0.05,
        stall_seconds=30,
        seed=11,
        match=blob_gets,
    )
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(attempts=15, timeout=5.0, sleep=no_sleep, rng=random.Random(0))
    stats = RetryStats()
    async with t.make(1.0) as b:  # a stall is noticed after 1 s without bytes
        for round_ in range(2):
            for name, data in t.contents.items():
                url = f"{t.base}/{name}"
                dest = tmp_path / f"{round_}-{name}"
                got = await with_retries(
                    policy, lambda url=url, dest=dest: b.download(url, dest), url=url, stats=stats
                )
                assert got == len(data) and dest.read_bytes() == data
                assert (
                    await with_retries(policy, lambda url=url: b.read_bytes(url), url=url, stats=stats)
                    == data
                )
                part = await with_retries(
                    policy, lambda url=url: b.read_range(url, 1, 40_000), url=url, stats=stats
                )
                assert part == data[1:40_000]
    assert proxy.stats.faults >= 5 and stats.retries >= 5
    assert len(slept) == stats.retries  # every retry went through the injected sleep
    assert not list(tmp_path.glob("*.part"))


class StallDeadline:
    """An attempt deadline on an injected clock: the attempt's time is up once the proxy holds its body
    stalled (the n-th attempt: the n-th stall), and the clock then moves on by the attempt's timeout.

    Real time would make the test depend on load: an attempt whose 0.5 s ran out before its request even
    reached the proxy never stalled (seen as 2 stalls instead of 3 on a loaded machine).
    """

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.given: list[float] = []
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    @contextlib.asynccontextmanager
    async def __call__(self, seconds: float) -> AsyncIterator[None]:
        self.given.append(seconds)
        stalls = len(self.given)

        async def expire(timeout: asyncio.Timeout) -> None:
            while self.proxy.stats.stalls < stalls:
                await asyncio.sleep(0.005)  # waits for the event, whatever the load
            self.now += seconds
            timeout.reschedule(asyncio.get_running_loop().time())

        async with asyncio.timeout(None) as timeout:
            watcher = asyncio.create_task(expire(timeout))
            try:
                yield
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


async def test_exhausted_retries_take_timeout_times_attempts(
    target: tuple[Target, FaultProxy], tmp_path: Path
) -> None:
    t, proxy = target
    proxy.plan = FaultPlan(stall_rate=1.0, stall_seconds=60, match=blob_gets)

    async def no_sleep(seconds: float) -> None:
        pass

    deadline = StallDeadline(proxy)
    policy = RetryPolicy(attempts=3, timeout=0.5, sleep=no_sleep, deadline=deadline, clock=deadline.clock)
    stats = RetryStats()
    async with t.make(60) as b:  # only the per-attempt download_timeout can end these attempts
        with pytest.raises(TransientStorageError, match=r"3 attempt\(s\) in 1\.50 s") as info:
            await with_retries(
                policy,
                lambda: b.download(f"{t.base}/blob-1500000.bin", tmp_path / "x"),
                url=t.base,
                stats=stats,
            )
    # Every attempt ran under a deadline of download_timeout and hung stalled until that deadline ended
    # it: 3 attempts take timeout x attempts.
    assert deadline.given == [0.5, 0.5, 0.5]
    assert stats.timeouts == 3 and proxy.stats.stalls == 3
    assert "timed out after 0.5 s" in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_not_found_is_tried_once(target: tuple[Target, FaultProxy]) -> None:
    t, proxy = target
    async with t.make(10) as b:
        with pytest.raises(ObjectNotFound):
            await with_retries(
                RetryPolicy(attempts=5), lambda: b.read_bytes(f"{t.base}/missing.bin"), url=t.base
            )
    assert proxy.stats.requests == 1
