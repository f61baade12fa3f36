"""GCS uploads whose answer is cut mid-way, through the fault proxy in front of fake-gcs-server.

A simple upload whose JSON answer is cut (truncated, reset, or cut short with a matching Content-Length so
it looks complete) is retried by the caller's policy and stores exact bytes. A resumable upload whose
chunk fails asks its session what it committed and continues in the same session. A fault that never
clears still fails with a typed error naming the object's URL.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.web import Request
from gcs_session_status import SessionStatus
from storage_cases import GCS_BUCKET

from astreaming.errors import TransientStorageError
from astreaming.storage.gcs import GCSBackend
from astreaming.storage.gcs_upload import MAX_RESUMES
from astreaming.storage.retry import RetryPolicy, with_retries
from astreaming.testing.faultproxy import FaultProxy
from astreaming.testing.faults import FaultKind, FaultPlan
from astreaming.testing.servers import FakeGCSServer

pytestmark = pytest.mark.timeout(120)
CHUNK = 256 << 10
SIMPLE = 70_000  # under the resumable threshold below
RESUMABLE = 4 * CHUNK + 1000  # five chunks


async def _no_sleep(seconds: float) -> None:
    return None


def _policy(attempts: int) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=_no_sleep, timeout=60)


def _first(n: int, method: str) -> Callable[[Request], bool]:
    """Match only the ``n``-th (0-based) request with this method to the upload endpoint."""
    seen = [0]

    def match(request: Request) -> bool:
        if request.method != method or not request.path.startswith("/upload/"):
            return False
        seen[0] += 1
        return seen[0] == n + 1

    return match


def _backend(base: str) -> GCSBackend:
    return GCSBackend(emulator_host=base, timeout=30, resumable_threshold=1 << 20, upload_chunk_size=CHUNK)


def _source(tmp_path: Path, size: int) -> tuple[Path, bytes, str]:
    data = random.Random(size).randbytes(size)
    src = tmp_path / "shard.00000.mds"
    src.write_bytes(data)
    return src, data, f"gs://{GCS_BUCKET}/{uuid.uuid4().hex[:12]}/shard.00000.mds"


async def _stored(server: FakeGCSServer, url: str) -> bytes:
    async with _backend(server.url) as clean:
        return await clean.read_bytes(url)


@pytest.mark.parametrize("fault", ["short", "truncate", "reset"])
async def test_a_cut_answer_to_a_simple_upload_is_retried(
    gcs_server: FakeGCSServer, tmp_path: Path, fault: str
) -> None:
    src, data, url = _source(tmp_path, SIMPLE)
    plan = FaultPlan(**{f"{fault}_rate": 1.0}, match=_first(0, "POST"))  # type: ignore[arg-type]
    async with FaultProxy(gcs_server.url, plan) as proxy, _backend(proxy.url) as backend:
        await with_retries(_policy(3), lambda: backend.upload(src, url), url=url, what="upload")
        assert proxy.stats.faults == 1
        assert [e.kind for e in proxy.history].count(FaultKind(fault)) == 1
        assert len(proxy.history) == 2  # the cut answer, then one clean retry
    assert await _stored(gcs_server, url) == data


async def test_a_cut_answer_that_never_clears_fails_typed_naming_the_url(
    gcs_server: FakeGCSServer, tmp_path: Path
) -> None:
    src, _, url = _source(tmp_path, SIMPLE)
    plan = FaultPlan(short_rate=1.0, match=lambda r: r.method == "POST")
    async with FaultProxy(gcs_server.url, plan) as proxy, _backend(proxy.url) as backend:
        with pytest.raises(TransientStorageError, match=url) as info:
            await with_retries(_policy(2), lambda: backend.upload(src, url), url=url, what="upload")
        assert info.value.url == url
        assert proxy.stats.shorts == 2


async def test_a_failed_chunk_continues_the_same_resumable_session(
    gcs_server: FakeGCSServer, tmp_path: Path
) -> None:
    src, data, url = _source(tmp_path, RESUMABLE)
    # The third chunk's PUT gets a 503 (it never reaches the server); no retry policy around the call.
    plan = FaultPlan(error_rate=1.0, error_statuses=(503,), match=_first(2, "PUT"))
    async with (
        SessionStatus(gcs_server.url) as status,
        FaultProxy(status.url, plan) as proxy,
        _backend(proxy.url) as backend,
    ):
        await backend.upload(src, url)
        methods = [e.key.split()[0] for e in proxy.history]
        assert proxy.stats.errors == 1
        assert status.queries == 1
        # One session: five chunks, the failed one, and the query of the committed offset.
        assert methods.count("POST") == 1
        assert methods.count("PUT") == 5 + 2
    assert await _stored(gcs_server, url) == data


@pytest.mark.parametrize("fault", ["short", "truncate", "reset"])
async def test_a_cut_answer_to_the_last_chunk_is_checked_with_the_session(
    gcs_server: FakeGCSServer, tmp_path: Path, fault: str
) -> None:
    src, data, url = _source(tmp_path, RESUMABLE)
    plan = FaultPlan(**{f"{fault}_rate": 1.0}, match=_first(4, "PUT"))  # type: ignore[arg-type]
    async with (
        SessionStatus(gcs_server.url) as status,
        FaultProxy(status.url, plan) as proxy,
        _backend(proxy.url) as backend,
    ):
        # The object is stored, but the answer saying so is cut: the session's status says it is done.
        await backend.upload(src, url)
        assert proxy.stats.faults == 1
        assert status.queries == 1
        assert [e.key.split()[0] for e in proxy.history].count("POST") == 1
    assert await _stored(gcs_server, url) == data


async def test_an_emulator_that_finalizes_on_the_status_query_is_not_trusted(
    gcs_server: FakeGCSServer, tmp_path: Path
) -> None:
    src, data, url = _source(tmp_path, RESUMABLE)
    # Straight to fake-gcs-server: its answer to the status query stores the object with two chunks of
    # five. The answer's size gives it away; the next attempt sends the object again.
    plan = FaultPlan(error_rate=1.0, error_statuses=(503,), match=_first(2, "PUT"))
    async with FaultProxy(gcs_server.url, plan) as proxy, _backend(proxy.url) as backend:
        with pytest.raises(TransientStorageError, match="bytes stored"):
            await backend.upload(src, url)
        await with_retries(_policy(2), lambda: backend.upload(src, url), url=url, what="upload")
    assert await _stored(gcs_server, url) == data


async def test_a_resumable_session_that_keeps_failing_fails_typed_naming_the_url(
    gcs_server: FakeGCSServer, tmp_path: Path
) -> None:
    src, _, url = _source(tmp_path, RESUMABLE)
    plan = FaultPlan(error_rate=1.0, error_statuses=(503,), match=lambda r: r.method == "PUT")
    async with FaultProxy(gcs_server.url, plan) as proxy, _backend(proxy.url) as backend:
        with pytest.raises(TransientStorageError, match=url) as info:
            await with_retries(_policy(2), lambda: backend.upload(src, url), url=url, what="upload")
        assert info.value.url == url
        assert [e.key.split()[0] for e in proxy.history].count("POST") == 2  # one session per attempt


@pytest.mark.parametrize("refused", [MAX_RESUMES, 1000])
async def test_a_session_that_takes_no_byte_is_bounded(
    gcs_server: FakeGCSServer, tmp_path: Path, refused: int
) -> None:
    src, data, url = _source(tmp_path, RESUMABLE)
    async with (
        SessionStatus(gcs_server.url, refuse_chunks=refused) as status,
        _backend(status.url) as backend,
    ):
        if refused <= MAX_RESUMES:
            await backend.upload(src, url)  # resent until the session takes it
            assert await _stored(gcs_server, url) == data
        else:
            with pytest.raises(TransientStorageError, match="took no byte") as info:
                await backend.upload(src, url)
            assert info.value.url == url
            assert status.refuse_chunks == 1000 - (MAX_RESUMES + 1)
