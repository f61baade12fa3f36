"""HTTP error mapping at the boundary, against a misbehaving aiohttp server on 127.0.0.1.

The same mapping (astreaming.storage.errormap / httpsession) serves the gs backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from astreaming.errors import ObjectNotFound, PermissionDenied, StorageError, TransientStorageError
from astreaming.storage.errormap import retry_after_seconds
from astreaming.storage.http import HTTPBackend
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries
from astreaming.testing.servers import free_port

pytestmark = pytest.mark.timeout(30)
BODY = bytes(range(256)) * 400  # 102400 bytes
RELEASE = web.AppKey("release", asyncio.Event)


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    headers = {"Retry-After": request.query["ra"]} if "ra" in request.query else {}
    return web.Response(status=code, text=f"error {code}", headers=headers)


async def truncated(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
    await resp.prepare(request)
    await resp.write(BODY[: len(BODY) // 2])
    request.transport.close()  # type: ignore[union-attr]  # connection dies mid-body
    return resp


async def stall(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
    await resp.prepare(request)
    await resp.write(BODY[:1000])
    await request.app[RELEASE].wait()  # stalls until the test is over
    return resp


async def no_range(request: web.Request) -> web.Response:
    return web.Response(body=BODY)  # ignores Range, like some CDNs and tiny servers


async def signed_get_only(request: web.Request) -> web.Response:
    """Like a presigned URL: the signature covers GET only, so HEAD is refused with 403."""
    if request.method == "HEAD":
        return web.Response(status=403)
    rng = request.http_range
    if request.headers.get("Range"):
        part = BODY[rng.start : rng.stop]
        cr = f"bytes {rng.start}-{rng.start + len(part) - 1}/{len(BODY)}"
        return web.Response(status=206, body=part, headers={"Content-Range": cr, "ETag": '"e1"'})
    return web.Response(body=BODY)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app[RELEASE] = asyncio.Event()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/truncated", truncated)
    app.router.add_get("/stall", stall)
    app.router.add_get("/norange", no_range)
    app.router.add_route("*", "/signed", signed_get_only)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    app[RELEASE].set()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (404, ObjectNotFound),
        (410, ObjectNotFound),
        (401, PermissionDenied),
        (403, PermissionDenied),
        (500, TransientStorageError),
        (502, TransientStorageError),
        (503, TransientStorageError),
        (429, TransientStorageError),
        (418, StorageError),
    ],
)
async def test_status_mapping(server: str, code: int, expected: type[StorageError], tmp_path: Path) -> None:
    async with HTTPBackend() as b:
        with pytest.raises(StorageError) as info:
            await b.download(f"{server}/status/{code}", tmp_path / "x")
    assert type(info.value) is expected
    assert f"HTTP {code}" in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_retry_after_is_reported(server: str) -> None:
    async with HTTPBackend() as b:
        with pytest.raises(TransientStorageError) as info:
            await b.read_bytes(f"{server}/status/429?ra=3")
        assert info.value.retry_after == 3.0
        with pytest.raises(TransientStorageError) as info:
            await b.read_bytes(f"{server}/status/503?ra=Wed,%2021%20Oct%202015%2007:28:00%20GMT")
        assert info.value.retry_after == 0.0  # a date in the past: retry now


async def test_truncated_body_is_transient_and_leaves_nothing(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "t.bin"
    dest.write_bytes(b"old")
    async with HTTPBackend() as b:
        with pytest.raises(TransientStorageError):
            await b.download(f"{server}/truncated", dest)
        with pytest.raises(TransientStorageError):
            await b.read_bytes(f"{server}/truncated")
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]


async def test_stalled_body_times_out(server: str, tmp_path: Path) -> None:
    async with HTTPBackend(timeout=0.3) as b:
        with pytest.raises(TransientStorageError, match="Timeout"):
            await b.download(f"{server}/stall", tmp_path / "s.bin")
    assert list(tmp_path.iterdir()) == []


async def test_connection_refused_is_transient(tmp_path: Path) -> None:
    async with HTTPBackend(timeout=5) as b:
        with pytest.raises(TransientStorageError, match=r"127\.0\.0\.1"):
            await b.read_bytes(f"http://127.0.0.1:{free_port()}/x")


async def test_server_ignoring_range(server: str) -> None:
    async with HTTPBackend() as b:
        assert await b.read_range(f"{server}/norange", 1000, 1100) == BODY[1000:1100]


async def test_messages_redact_credentials(server: str) -> None:
    host = server.removeprefix("http://")
    url = f"http://alice:s3cr3t@{host}/status/404?sv=1&sig=SIGNATURE123&X-Amz-Signature=abcdef"
    async with HTTPBackend() as b:
        with pytest.raises(ObjectNotFound) as info:
            await b.read_bytes(url)
    text = f"{info.value} {info.value.url}"
    for secret in ("alice", "s3cr3t", "SIGNATURE123", "abcdef"):
        assert secret not in text
    assert "/status/404" in text and "REDACTED" in text


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


async def test_download_timeout_bounds_each_attempt_and_cleans_up(server: str, tmp_path: Path) -> None:
    """The per-attempt timeout cancels a download mid-body; every attempt's .part file is removed."""
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    policy = RetryPolicy(attempts=3, timeout=0.3, sleep=fake_sleep)
    stats = RetryStats()
    dest = tmp_path / "stalled.bin"
    # The socket timeout alone would wait a minute per attempt, past this module's 30 s timeout mark: only
    # the per-attempt download_timeout can end these attempts in time.
    async with HTTPBackend(timeout=60) as b:
        with pytest.raises(TransientStorageError, match="3 attempt"):
            await with_retries(policy, lambda: b.download(f"{server}/stall", dest), url=server, stats=stats)
        snapshot = b.statistics()
    assert (stats.attempts, stats.timeouts, len(sleeps)) == (3, 3, 2)
    assert snapshot.requests == 3 and snapshot is not b.stats
    assert list(tmp_path.iterdir()) == []


async def test_stat_falls_back_to_a_ranged_get(server: str) -> None:
    async with HTTPBackend() as b:
        info = await b.stat(f"{server}/signed?X-Amz-Signature=abc")
        assert (info.size, info.etag) == (len(BODY), '"e1"')
        assert await b.exists(f"{server}/signed")
        with pytest.raises(ObjectNotFound):
            await b.stat(f"{server}/status/404")
