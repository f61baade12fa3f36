"""One conformance suite, run against every backend through the ``case`` fixture (see conftest).

Objects are seeded out of band (straight to the server or disk) and read back through the backend,
and uploads are checked by reading through the backend *and* out of band where it matters. Another
backend joins the suite by defining the fixtures ``case`` (every backend), ``remote_case`` (backends
that stream through PartFile) and ``writable_case`` (backends with upload/delete), each returning a
``StorageCase``, in its own test module and importing these tests
(``from test_storage_conformance import *``).
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from pathlib import Path

import pytest
from storage_cases import StorageCase

from astreaming.errors import ConfigError, ObjectNotFound
from astreaming.storage.base import ObjectInfo
from astreaming.storage.linkgauge import LinkGauge
from astreaming.storage.partfile import PartFile
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries

pytestmark = pytest.mark.timeout(60)


def blob(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic, non-repeating bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


async def test_read_bytes(case: StorageCase) -> None:
    data = blob(70_000)
    case.put("index.json", data)
    case.put("empty", b"")
    async with case.make() as b:
        assert await b.read_bytes(case.url("index.json")) == data
        assert await b.read_bytes(case.url("empty")) == b""
        assert b.stats.bytes_downloaded == len(data)


async def test_download_streams_atomically(case: StorageCase, tmp_path: Path) -> None:
    data = blob(3 << 20, seed=1)  # several chunks and write batches
    case.put("shards/shard.00000.mds", data)
    dest = tmp_path / "cache" / "deep" / "shard.00000.mds"  # parents are created
    async with case.make() as b:
        n = await b.download(case.url("shards/shard.00000.mds"), dest)
        assert n == len(data)
        assert dest.read_bytes() == data
        assert leftovers(dest.parent) == []
        # A second download replaces the file in place.
        case.put("shards/shard.00000.mds", data[:1000])
        assert await b.download(case.url("shards/shard.00000.mds"), dest) == 1000
        assert dest.read_bytes() == data[:1000]


async def test_download_missing_leaves_dest_untouched(case: StorageCase, tmp_path: Path) -> None:
    dest = tmp_path / "shard.mds"
    dest.write_bytes(b"previous complete copy")
    async with case.make() as b:
        with pytest.raises(ObjectNotFound) as info:
            await b.download(case.url("nope/shard.mds"), dest)
    assert "nope/shard.mds" in str(info.value)
    assert dest.read_bytes() == b"previous complete copy"
    assert leftovers(tmp_path) == []


async def test_download_failure_before_publish_removes_part(
    remote_case: StorageCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = remote_case  # local copies do not go through PartFile; see test_storage_local.py
    case.put("x.bin", blob(500_000))
    seen: list[Path] = []

    async def boom(self: PartFile, expected: int | None = None) -> int:
        seen.append(self.path)
        assert self.path.exists()  # bytes were written to the .part file
        raise OSError("simulated failure after the body")

    monkeypatch.setattr(PartFile, "commit", boom)
    dest = tmp_path / "x.bin"
    async with case.make() as b:
        with pytest.raises(OSError, match="simulated"):
            await b.download(case.url("x.bin"), dest)
    assert seen and not seen[0].exists()
    assert not dest.exists() and leftovers(tmp_path) == []


async def test_download_cancelled_removes_part(
    remote_case: StorageCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = remote_case  # local cancellation: see test_storage_local.py
    case.put("y.bin", blob(300_000))
    reached = asyncio.Event()

    async def hang(self: PartFile, expected: int | None = None) -> int:
        reached.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    monkeypatch.setattr(PartFile, "commit", hang)
    dest = tmp_path / "y.bin"
    async with case.make() as b:
        task = asyncio.ensure_future(b.download(case.url("y.bin"), dest))
        await asyncio.wait_for(reached.wait(), 20)
        assert len(leftovers(tmp_path)) == 1  # the download is in its .part file
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not dest.exists() and leftovers(tmp_path) == []


async def test_read_range(case: StorageCase) -> None:
    data = blob(100_000, seed=2)
    case.put("r.bin", data)
    url = case.url("r.bin")
    async with case.make() as b:
        assert await b.read_range(url, 0, 10) == data[:10]
        assert await b.read_range(url, 12_345, 67_890) == data[12_345:67_890]
        assert await b.read_range(url, 99_990, 200_000) == data[99_990:]  # end clamped
        assert await b.read_range(url, 50, 50) == b""
        assert await b.read_range(url, 100_000, 100_010) == b""  # starts at the end
        with pytest.raises(ConfigError):
            await b.read_range(url, 10, 5)
        with pytest.raises(ObjectNotFound):
            await b.read_range(case.url("missing.bin"), 0, 10)


async def test_read_range_into_streams_and_stamps_the_first_byte(case: StorageCase) -> None:
    """A range streams to the sink in order (several chunks for a range of megabytes) with the same bytes
    as read_range; the remote backends tell a watching link gauge when the answer's headers came."""
    data = blob(3_000_000, seed=7)
    case.put("s.bin", data)
    url = case.url("s.bin")
    now = [0.0]
    gauge = LinkGauge(clock=lambda: now[0])
    async with case.make() as b:
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(bytes(chunk))

        request = gauge.begin()
        now[0] = 0.25
        with gauge.receiving(request):
            n = await b.read_range_into(url, 100_000, 2_900_000, sink)
        now[0] = 1.0
        gauge.end(request, n)
        assert n == 2_800_000 and b"".join(chunks) == data[100_000:2_900_000]
        if case.name in ("gs", "s3", "http"):
            assert len(chunks) >= 2  # streamed, not handed over whole
            assert request.first_byte == 0.25 and gauge.request_cost() == 0.25
            assert request.body_seconds(1.0) == 0.75
        # Past the end: nothing, and the sink is not called.
        chunks.clear()
        assert await b.read_range_into(url, 3_000_000, 3_000_010, sink) == 0 and chunks == []
        assert await b.read_range_into(url, 2_999_990, 3_100_000, sink) == 10  # end clamped
        assert b"".join(chunks) == data[2_999_990:]


async def test_stat_and_exists(case: StorageCase) -> None:
    case.put("s.bin", blob(1234))
    async with case.make() as b:
        info = await b.stat(case.url("s.bin"))
        assert info == ObjectInfo(url=case.url("s.bin"), size=1234, etag=info.etag)
        assert info.etag
        assert await b.exists(case.url("s.bin"))
        assert not await b.exists(case.url("t.bin"))
        with pytest.raises(ObjectNotFound):
            await b.stat(case.url("t.bin"))


async def test_list_paginates(case: StorageCase) -> None:
    keys = [f"data/shard.{i:05d}.mds" for i in range(8)] + ["data/sub/index.json", "database/x", "other/y"]
    for i, key in enumerate(keys):
        case.put(key, blob(100 + i))
    async with case.make() as b:
        if not case.listable:
            with pytest.raises(ConfigError):
                [x async for x in b.list(case.url("data/"))]
            return
        before = b.stats.requests
        got = [x async for x in b.list(case.url("data/"))]
        assert [x.url for x in got] == [case.url(k) for k in sorted(keys[:9])]
        assert [x.size for x in got] == [100 + keys.index(k) for k in sorted(keys[:9])]
        if case.page_size:
            assert b.stats.requests - before >= -(-9 // case.page_size)  # really went through pages
        # A plain string prefix, as object stores define it.
        assert [x.url async for x in b.list(case.url("data"))] == [case.url(k) for k in sorted(keys[:10])]
        assert [x async for x in b.list(case.url("nothing-here/"))] == []


async def test_upload_small_and_large(case: StorageCase, tmp_path: Path) -> None:
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small.write_bytes(blob(1000, seed=3))
    large.write_bytes(blob(case.large_upload + 12_345, seed=4))
    async with case.make() as b:
        if not case.writable:
            with pytest.raises(ConfigError):
                await b.upload(small, case.url("up/small.bin"))
            with pytest.raises(ConfigError):
                await b.delete(case.url("up/small.bin"))
            return
        await b.upload(small, case.url("up/small.bin"))
        await b.upload(large, case.url("up/large.bin"))
        assert await b.read_bytes(case.url("up/small.bin")) == small.read_bytes()
        assert await b.read_bytes(case.url("up/large.bin")) == large.read_bytes()
        assert (await b.stat(case.url("up/large.bin"))).size == large.stat().st_size
        assert b.stats.bytes_uploaded == small.stat().st_size + large.stat().st_size
        # Uploading again replaces the object.
        await b.upload(small, case.url("up/large.bin"))
        assert await b.read_bytes(case.url("up/large.bin")) == small.read_bytes()


async def test_delete(writable_case: StorageCase) -> None:
    case = writable_case  # read-only http: refusal is checked in test_upload_small_and_large
    case.put("d.bin", b"bye")
    async with case.make() as b:
        await b.delete(case.url("d.bin"))
        assert not await b.exists(case.url("d.bin"))
        with pytest.raises(ObjectNotFound):
            await b.delete(case.url("d.bin"))


async def test_not_found_is_not_retried(case: StorageCase, tmp_path: Path) -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    policy = RetryPolicy(attempts=5, sleep=sleep)
    stats = RetryStats()
    async with case.make() as b:
        with pytest.raises(ObjectNotFound):
            await with_retries(
                policy,
                lambda: b.download(case.url("gone"), tmp_path / "g"),
                url=case.url("gone"),
                stats=stats,
            )
    assert (stats.attempts, stats.retries, sleeps) == (1, 0, [])


async def test_pickles_without_live_clients(case: StorageCase) -> None:
    case.put("p.bin", b"pickled")
    async with case.make() as b:
        assert await b.read_bytes(case.url("p.bin")) == b"pickled"
        clone = pickle.loads(pickle.dumps(b))
    # The clone opens its own clients, in this loop; so does a clone of a closed backend.
    async with clone:
        assert await clone.read_bytes(case.url("p.bin")) == b"pickled"
    async with pickle.loads(pickle.dumps(clone)) as again:
        assert await again.read_bytes(case.url("p.bin")) == b"pickled"


async def test_closed_backend_refuses_work(case: StorageCase) -> None:
    case.put("c.bin", b"x")
    b = case.make()
    async with b:
        await b.read_bytes(case.url("c.bin"))
    if case.name in ("local", "file"):
        # Local backends hold no client: closing is a no-op and they keep working.
        assert await b.read_bytes(case.url("c.bin")) == b"x"
        return
    with pytest.raises(ConfigError, match="closed"):
        await b.read_bytes(case.url("c.bin"))


async def test_keys_with_spaces_unicode_and_plus(case: StorageCase, tmp_path: Path) -> None:
    key = "odd dir/ünïcödé+plus=eq&amp;.bin"
    case.put(key, b"odd")
    async with case.make() as b:
        assert await b.read_bytes(case.url(key)) == b"odd"
        assert await b.download(case.url(key), tmp_path / "odd.bin") == 3
        assert (await b.stat(case.url(key))).size == 3
        if case.listable:
            assert [x.url async for x in b.list(case.url("odd dir/"))] == [case.url(key)]
