"""FaultPlan validation, seeded decisions, determinism through the proxy, and the threaded runner."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from astreaming.errors import ConfigError
from astreaming.testing.faultproxy import FaultProxy
from astreaming.testing.faults import FaultKind, FaultPlan, Pacer, decide
from astreaming.testing.threadedproxy import ThreadedFaultProxy


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"reset_rate": -0.1}, "reset_rate"),
        ({"reset_rate": 0.6, "truncate_rate": 0.6}, "reset_rate + truncate_rate"),
        ({"latency": -1}, "latency"),
        ({"bandwidth": 0}, "bandwidth"),
        ({"error_rate": 0.1, "error_statuses": ()}, "error_statuses"),
        ({"error_statuses": (200,)}, "error_statuses"),
        ({"stall_seconds": float("inf")}, "stall_seconds"),
    ],
)
def test_plan_rejects_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("+", r"\+")):
        FaultPlan(**kwargs)


def test_decide_rates_and_statuses() -> None:
    n = 2000
    clean = [decide(FaultPlan(seed=3), "GET /x ", i).kind for i in range(n)]
    assert set(clean) == {FaultKind.NONE}
    plan = FaultPlan(error_rate=0.2, error_statuses=(500, 429), reset_rate=0.1, truncate_rate=0.1, seed=3)
    decisions = [decide(plan, "GET /x ", i) for i in range(n)]
    kinds = Counter(d.kind for d in decisions)
    # Binomial bounds, generous: errors ~400, resets and truncations ~0.8 * 0.1 * n = 160 each.
    assert 320 < kinds[FaultKind.ERROR] < 480
    assert 110 < kinds[FaultKind.RESET] < 210
    assert 110 < kinds[FaultKind.TRUNCATE] < 210
    assert kinds[FaultKind.STALL] == 0
    statuses = Counter(d.status for d in decisions if d.kind is FaultKind.ERROR)
    assert set(statuses) == {500, 429}
    cuts = [d.cut for d in decisions if d.kind is FaultKind.RESET]
    assert all(0.1 <= c < 0.9 for c in cuts)
    assert len(set(cuts)) > 50  # the cut point varies
    # Same inputs, same decision; a different seed or key gives a different sequence.
    assert decisions == [decide(plan, "GET /x ", i) for i in range(n)]
    other_seed = FaultPlan(error_rate=0.2, error_statuses=(500, 429), reset_rate=0.1, truncate_rate=0.1)
    assert decisions != [decide(other_seed, "GET /x ", i) for i in range(n)]
    assert decisions != [decide(plan, "GET /y ", i) for i in range(n)]


async def _run_sequence(
    upstream_url: str, seed: int, concurrent: bool, per_key: bool = True, paths: list[str] | None = None
) -> list[tuple[str, int, str]]:
    plan = FaultPlan(error_rate=0.3, truncate_rate=0.2, reset_rate=0.1, seed=seed, per_key=per_key)
    paths = paths or ["/files/blob.bin", "/files/small.txt", "/files/missing"] * 10
    async with FaultProxy(upstream_url, plan) as proxy, aiohttp.ClientSession() as client:

        async def one(path: str) -> None:
            try:
                async with client.get(proxy.url + path) as r:
                    await r.read()
            except aiohttp.ClientError:
                pass

        if concurrent:
            await asyncio.gather(*(one(p) for p in paths))
        else:
            for p in paths:
                await one(p)
        events = proxy.history
    if not per_key:
        return [(str(i), e.occurrence, e.kind.value) for i, e in enumerate(events)]
    return sorted((e.key, e.occurrence, e.kind.value) for e in events)


async def test_same_seed_same_sequence_of_faults_whatever_the_names(upstream: Any) -> None:
    # Default mode: the n-th request gets the n-th decision, so renaming objects (random test
    # prefixes) does not change which requests fail.
    names = ["/files/blob.bin", "/files/small.txt"] * 10
    renamed = ["/files/missing-a", "/files/missing-b"] * 10
    first = await _run_sequence(upstream.url, seed=3, concurrent=False, per_key=False, paths=names)
    again = await _run_sequence(upstream.url, seed=3, concurrent=False, per_key=False, paths=renamed)
    other = await _run_sequence(upstream.url, seed=4, concurrent=False, per_key=False, paths=names)
    assert [occurrence for _, occurrence, _ in first] == list(range(20))
    assert {kind for _, _, kind in first} >= {"none", "error"}
    assert first == again
    assert first != other


async def test_per_key_same_faults_even_when_interleaved(upstream: Any) -> None:
    first = await _run_sequence(upstream.url, seed=11, concurrent=False)
    again = await _run_sequence(upstream.url, seed=11, concurrent=True)
    other = await _run_sequence(upstream.url, seed=12, concurrent=False)
    assert len(first) == 30
    assert {kind for _, _, kind in first} >= {"none", "error"}
    assert first == again
    assert first != other


async def test_runtime_plan_change_and_reset_counters(upstream: Any) -> None:
    async with FaultProxy(upstream.url) as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/files/small.txt") as r:
            assert r.status == 200
        proxy.plan = FaultPlan(error_rate=1.0, error_statuses=(503,))
        async with client.get(proxy.url + "/files/small.txt") as r:
            assert r.status == 503
        assert (proxy.stats.requests, proxy.stats.errors) == (2, 1)
        proxy.reset_counters()
        assert proxy.stats.requests == 0
        assert proxy.history == []


# -- threaded runner, used from sync code and other processes --------------------------------------


@pytest.fixture
def sync_upstream(tmp_path: Path) -> Iterator[str]:
    """A stdlib threaded file server: the sync tests block the calling thread, so no loop upstream."""
    (tmp_path / "data.bin").write_bytes(b"0123456789" * 1000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_threaded_proxy_from_sync_code_and_another_process(sync_upstream: str) -> None:
    plan = FaultPlan(error_rate=1.0, error_statuses=(503,), retry_after=1)
    with ThreadedFaultProxy(sync_upstream, plan) as proxy:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(proxy.url + "/data.bin", timeout=10)
        assert info.value.code == 503
        assert info.value.headers["Retry-After"] == "1"
        info.value.close()

        proxy.plan = FaultPlan()
        with urllib.request.urlopen(proxy.url + "/data.bin", timeout=10) as r:
            assert r.read() == b"0123456789" * 1000

        code = (
            "import sys, urllib.request\nprint(len(urllib.request.urlopen(sys.argv[1], timeout=10).read()))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, proxy.url + "/data.bin"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert out.stdout.strip() == "10000"
        stats = proxy.stats
        assert (stats.requests, stats.errors, stats.forwarded) == (3, 1, 2)
        assert [e.kind for e in proxy.history] == [FaultKind.ERROR, FaultKind.NONE, FaultKind.NONE]
    with pytest.raises(RuntimeError, match="not started"):
        _ = proxy.url


async def test_pacer_rate_and_burst_with_a_fake_clock() -> None:
    now = [100.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(1000.0, burst=0.5, clock=lambda: now[0], sleep=sleep)
    # An idle link banks at most `burst` seconds: the first 500 bytes go at once.
    await pacer.consume(500)
    assert now[0] == pytest.approx(100.0)
    # Then the rate holds: 2000 more bytes take 2 s.
    for _ in range(20):
        await pacer.consume(100)
    assert now[0] == pytest.approx(102.0)
    # Time spent between chunks is not lost (up to the burst): after 0.3 s of other work, 300
    # bytes go without waiting.
    now[0] += 0.3
    await pacer.consume(300)
    assert now[0] == pytest.approx(102.3)
    # A long idle period banks no more than the burst.
    now[0] += 10.0
    await pacer.consume(1500)
    assert now[0] == pytest.approx(112.3 + 1.0)
