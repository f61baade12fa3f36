"""FaultProxy forwarding and each fault kind, observed by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import aiohttp
import pytest
from yarl import URL

from astreaming.errors import ConfigError
from astreaming.testing.faultproxy import FaultProxy
from astreaming.testing.faults import FaultKind, FaultPlan


async def read_until_error(response: aiohttp.ClientResponse) -> tuple[bytes, BaseException | None]:
    """Read a body chunk by chunk; return what arrived and the error that ended it, if any."""
    got = bytearray()
    try:
        async for chunk in response.content.iter_any():
            got += chunk
    except (aiohttp.ClientError, OSError) as exc:
        return bytes(got), exc
    return bytes(got), None


# -- forwarding ------------------------------------------------------------------------------------


async def test_get_range_head_pass_through(upstream: Any) -> None:
    async with FaultProxy(upstream.url) as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/files/blob.bin") as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(len(upstream.blob))
            assert await r.read() == upstream.blob
        async with client.get(proxy.url + "/files/blob.bin", headers={"Range": "bytes=1000-70999"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 1000-70999/{len(upstream.blob)}"
            assert await r.read() == upstream.blob[1000:71000]
        async with client.head(proxy.url + "/files/blob.bin") as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(len(upstream.blob))
            assert await r.read() == b""
        async with client.get(proxy.url + "/files/missing") as r:
            assert r.status == 404
        stats = proxy.stats
    assert stats.requests == stats.forwarded == 4
    assert stats.faults == 0
    assert stats.bytes_sent >= len(upstream.blob) + 70000
    assert upstream.requests[:2] == ["GET /files/blob.bin", "GET /files/blob.bin"]


async def test_forwards_method_query_headers_and_body(upstream: Any) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB upload
    upstream_port = upstream.url.rsplit(":", 1)[1]
    async with FaultProxy(upstream.url) as proxy, aiohttp.ClientSession() as client:
        url = URL(proxy.url + "/echo/a%2Fb%20c?x=1&y=%2F&x=2", encoded=True)
        async with client.put(url, data=body, headers={"X-Custom": "v1", "Content-Type": "app/x"}) as r:
            seen = json.loads(await r.read())
        assert seen["method"] == "PUT"
        assert seen["path_qs"] == "/echo/a%2Fb%20c?x=1&y=%2F&x=2"  # encoding untouched
        assert seen["length"] == len(body)
        assert seen["sha256"] == hashlib.sha256(body).hexdigest()
        assert seen["headers"]["X-Custom"] == "v1"
        assert seen["headers"]["Content-Type"] == "app/x"
        assert seen["headers"]["Host"] == f"127.0.0.1:{upstream_port}"  # rewritten to the upstream's

        async def stream():  # type: ignore[no-untyped-def]
            for i in range(0, len(body), 100_000):
                yield body[i : i + 100_000]

        async with client.post(proxy.url + "/echo/chunked-upload", data=stream()) as r:
            seen = json.loads(await r.read())
        assert seen["length"] == len(body)
        assert seen["sha256"] == hashlib.sha256(body).hexdigest()

        async with client.delete(proxy.url + "/echo/x") as r:
            seen = json.loads(await r.read())
        assert (seen["method"], seen["length"]) == ("DELETE", 0)
        # No header the client did not send is invented on the way (Azure signs Content-Type).
        assert "Content-Type" not in seen["headers"]


async def test_preserve_host(upstream: Any) -> None:
    async with (
        FaultProxy(upstream.url, preserve_host=True) as proxy,
        aiohttp.ClientSession() as client,
        client.get(proxy.url + "/echo/h") as r,
    ):
        seen = json.loads(await r.read())
        assert seen["headers"]["Host"] == proxy.url.removeprefix("http://")


async def test_chunked_body_and_location_rewrite(upstream: Any) -> None:
    async with FaultProxy(upstream.url) as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/chunked") as r:
            assert "Content-Length" not in r.headers
            assert await r.read() == upstream.blob
        async with client.get(proxy.url + "/redirect", allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == proxy.url + "/files/blob.bin"


async def test_upstream_down_gives_502() -> None:
    async with FaultProxy("http://127.0.0.1:9") as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/x") as r:
            assert r.status == 502
        assert proxy.stats.upstream_failures == 1


# -- each fault kind -------------------------------------------------------------------------------


async def test_latency_added_to_every_request(upstream: Any) -> None:
    async with (
        FaultProxy(upstream.url, FaultPlan(latency=0.15)) as proxy,
        aiohttp.ClientSession() as client,
    ):
        for path in ("/files/small.txt", "/files/missing"):
            start = time.monotonic()
            async with client.get(proxy.url + path) as r:
                await r.read()
            assert time.monotonic() - start >= 0.15


async def test_bandwidth_cap_shared_and_per_connection(upstream: Any) -> None:
    rate = 1_000_000.0  # 256 KiB at 1 MB/s: ~0.26 s

    def least(nbytes: int) -> float:
        # An idle link may send 50 ms worth of bytes at once (Pacer's burst); the rest is paced.
        return 0.95 * (nbytes - 0.05 * rate) / rate

    async with FaultProxy(upstream.url, FaultPlan(bandwidth=rate)) as proxy, aiohttp.ClientSession() as c:

        async def fetch() -> bytes:
            async with c.get(proxy.url + "/files/blob.bin") as r:
                return await r.read()

        start = time.monotonic()
        assert await fetch() == upstream.blob
        single = time.monotonic() - start
        assert least(len(upstream.blob)) <= single

        # Shared link: two concurrent downloads take about twice as long as one.
        start = time.monotonic()
        assert await asyncio.gather(fetch(), fetch()) == [upstream.blob] * 2
        shared = time.monotonic() - start
        assert shared >= least(2 * len(upstream.blob))

        # Per connection: each gets the full rate, so two take about as long as one.
        proxy.plan = FaultPlan(connection_bandwidth=rate)
        start = time.monotonic()
        assert await asyncio.gather(fetch(), fetch()) == [upstream.blob] * 2
        per_connection = time.monotonic() - start
        # (Only lower bounds here: an upper bound on elapsed time fails on a loaded machine.)
        assert least(len(upstream.blob)) <= per_connection

        # Both: one connection gets its own cap, even on an idle link three times as fast...
        proxy.plan = FaultPlan(bandwidth=3 * rate, connection_bandwidth=rate)
        start = time.monotonic()
        assert await fetch() == upstream.blob
        assert least(len(upstream.blob)) <= time.monotonic() - start
        # ...and four connections together get at most the link's rate.
        start = time.monotonic()
        assert await asyncio.gather(*(fetch() for _ in range(4))) == [upstream.blob] * 4
        assert least(4 * len(upstream.blob) / 3) <= time.monotonic() - start
    with pytest.raises(ConfigError, match="connection_bandwidth must be > 0"):
        FaultPlan(connection_bandwidth=0)


@pytest.mark.parametrize(("status", "retry_after"), [(503, "2"), (429, "0.5"), (500, None)])
async def test_error_status_with_retry_after(upstream: Any, status: int, retry_after: str | None) -> None:
    plan = FaultPlan(error_rate=1.0, error_statuses=(status,), retry_after=float(retry_after or 7))
    async with FaultProxy(upstream.url, plan) as proxy, aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.get(proxy.url + "/files/blob.bin") as r:
                assert r.status == status
                assert r.headers.get("Retry-After") == retry_after  # only on 429 and 503
                await r.read()
        assert proxy.stats.errors == 3
        assert proxy.stats.forwarded == 0
    assert upstream.requests == []  # an injected error never reaches the upstream


async def test_reset_mid_body_raises_client_error(upstream: Any) -> None:
    async with (
        FaultProxy(upstream.url, FaultPlan(reset_rate=1.0)) as proxy,
        aiohttp.ClientSession() as client,
    ):
        for _ in range(3):
            async with client.get(proxy.url + "/files/blob.bin") as r:
                assert r.status == 200
                got, error = await read_until_error(r)
            assert error is not None
            assert len(got) < len(upstream.blob)
            assert got == upstream.blob[: len(got)]
        assert proxy.stats.resets == 3
        assert {e.kind for e in proxy.history} == {FaultKind.RESET}
        # The proxy still serves after resetting connections.
        proxy.plan = FaultPlan()
        async with client.get(proxy.url + "/files/blob.bin") as r:
            assert await r.read() == upstream.blob


async def test_truncated_body_keeps_content_length(upstream: Any) -> None:
    async with (
        FaultProxy(upstream.url, FaultPlan(truncate_rate=1.0)) as proxy,
        aiohttp.ClientSession() as client,
    ):
        for path, full in (("/files/blob.bin", upstream.blob), ("/chunked", upstream.blob)):
            async with client.get(proxy.url + path) as r:
                got, error = await read_until_error(r)
                if path == "/files/blob.bin":
                    assert r.headers["Content-Length"] == str(len(full))
            assert isinstance(error, aiohttp.ClientPayloadError)
            assert 0 < len(got) < len(full)
            assert got == full[: len(got)]
        async with client.get(proxy.url + "/files/blob.bin", headers={"Range": "bytes=10-1009"}) as r:
            assert r.status == 206
            got, error = await read_until_error(r)
        assert error is not None
        assert len(got) < 1000
        assert got == upstream.blob[10 : 10 + len(got)]
        assert proxy.stats.truncations == 3


async def test_short_body_looks_complete_with_a_lowered_content_length(upstream: Any) -> None:
    async with (
        FaultProxy(upstream.url, FaultPlan(short_rate=1.0)) as proxy,
        aiohttp.ClientSession() as client,
    ):
        for path, headers in (("/files/blob.bin", {}), ("/files/blob.bin", {"Range": "bytes=10-1009"})):
            async with client.get(proxy.url + path, headers=headers) as r:
                got, error = await read_until_error(r)
                announced = int(r.headers["Content-Length"])
            # A clean end: no client error, and the body is exactly as long as announced.
            assert error is None
            assert announced == len(got)
            start = 10 if headers else 0
            assert 0 < len(got) < (1000 if headers else len(upstream.blob))
            assert got == upstream.blob[start : start + len(got)]
        async with client.get(proxy.url + "/chunked") as r:
            got, error = await read_until_error(r)
        assert error is None
        assert 0 < len(got) < len(upstream.blob)
        assert got == upstream.blob[: len(got)]
        assert proxy.stats.shorts == 3 and proxy.stats.faults == 3
        # The connection stays usable: the next request on the same session is served whole.
        proxy.plan = FaultPlan()
        async with client.get(proxy.url + "/files/blob.bin") as r:
            assert await r.read() == upstream.blob


async def test_stall_triggers_client_timeout_and_later_completes(upstream: Any) -> None:
    # An hour-long stall: the client's own timeout must end the request (pytest-timeout would fail the
    # test long before the stall ended), and closing the proxy must cancel it rather than wait.
    async with FaultProxy(upstream.url, FaultPlan(stall_rate=1.0, stall_seconds=3600)) as proxy:
        timeout = aiohttp.ClientTimeout(sock_read=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            with pytest.raises(asyncio.TimeoutError):
                async with client.get(proxy.url + "/files/blob.bin") as r:
                    await r.read()
        assert proxy.stats.stalls == 1

        # A short stall without a client timeout: the body completes intact, late.
        proxy.plan = FaultPlan(stall_rate=1.0, stall_seconds=0.3)
        start = time.monotonic()
        async with aiohttp.ClientSession() as client, client.get(proxy.url + "/files/blob.bin") as r:
            assert await r.read() == upstream.blob
        assert time.monotonic() - start >= 0.3
        assert proxy.stats.stalls == 2


async def test_match_restricts_faults(upstream: Any) -> None:
    plan = FaultPlan(error_rate=1.0, error_statuses=(500,), match=lambda r: r.path.endswith(".bin"))
    async with FaultProxy(upstream.url, plan) as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/files/small.txt") as r:
            assert r.status == 200
            assert await r.read() == b"hello proxy\n"
        async with client.get(proxy.url + "/files/blob.bin") as r:
            assert r.status == 500
        assert [e.kind for e in proxy.history] == [FaultKind.NONE, FaultKind.ERROR]
        assert proxy.stats.errors == 1


async def test_client_leaving_mid_body_is_not_an_upstream_failure(upstream: Any) -> None:
    async with (
        FaultProxy(upstream.url, FaultPlan(bandwidth=500_000)) as proxy,
        aiohttp.ClientSession() as client,
    ):
        async with client.get(proxy.url + "/files/blob.bin") as r:
            await r.content.readexactly(10_000)
            r.close()  # drop the connection with most of the body unsent
        while proxy.in_flight:  # until the proxy's handler has noticed and ended
            await asyncio.sleep(0.01)
        assert proxy.stats.upstream_failures == 0
        assert proxy.stats.bytes_sent < len(upstream.blob)
        async with client.get(proxy.url + "/files/small.txt") as r:
            assert await r.read() == b"hello proxy\n"
