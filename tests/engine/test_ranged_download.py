"""Large shards come down as parallel byte ranges: identical samples on every backend, under faults,
with DataLoader workers; part sizes follow the measured throughput; a failed part leaves nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astreaming import (
    FormatError,
    MDSWriter,
    ObjectNotFound,
    StreamingDataLoader,
    StreamingDataset,
    TransientStorageError,
)
from astreaming.storage import ranged
from astreaming.storage.local import LocalBackend
from astreaming.storage.ranged import RangedDownloader
from astreaming.storage.retry import RetryPolicy, RetryStats
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

from .remotes import BUCKET, s3_env, upload_tree

SHARDS = 4
SAMPLE_BYTES = 20_000
SAMPLES_PER_SHARD = 30  # ~600 KB shards: 5 parts of 128 KiB each once parts are made small
PART = 128 << 10


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ranged") / "data"
    with MDSWriter(
        out=str(root),
        columns={"id": "int", "blob": "bytes"},
        size_limit=SAMPLES_PER_SHARD * (SAMPLE_BYTES + 100),
    ) as w:
        for i in range(SHARDS * SAMPLES_PER_SHARD):
            w.write({"id": i, "blob": os.urandom(SAMPLE_BYTES)})
    return root


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Parts of 128 KiB (inherited by forked workers), and a record of every split download's size."""
    monkeypatch.setattr(ranged, "MIN_PART", PART)
    monkeypatch.setattr(ranged, "MAX_PART", PART)
    split: list[int] = []
    original = RangedDownloader.download

    async def counting(self: RangedDownloader, backend: Any, url: str, size: int, *a: Any, **k: Any) -> int:
        split.append(size)
        return await original(self, backend, url, size, *a, **k)

    monkeypatch.setattr(RangedDownloader, "download", counting)
    yield split


def _samples(ds: StreamingDataset) -> list[tuple[int, bytes]]:
    return [(int(s["id"]), bytes(s["blob"])) for s in ds]  # type: ignore[call-overload]


def _expected(source: Path) -> list[tuple[int, bytes]]:
    return _samples(StreamingDataset(local=str(source), batch_size=10))


def test_parts_through_faults_give_identical_samples(
    source: Path, tmp_path: Path, small_parts: list[int]
) -> None:
    plan = FaultPlan(
        error_rate=0.1,
        retry_after=0.01,
        reset_rate=0.1,
        truncate_rate=0.1,
        seed=3,
        match=lambda r: "shard." in r.path,
    )
    shard_bytes = sum(p.stat().st_size for p in source.glob("shard.*"))
    with StaticHTTPServer(source.parent) as server, ThreadedFaultProxy(server.url, plan) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data", local=str(tmp_path / "c"), batch_size=10, download_retry=8
        )
        got = _samples(ds)
        requests = proxy.stats.requests
    assert got == _expected(source)
    assert len(small_parts) == SHARDS  # every shard came down in parts...
    assert requests >= SHARDS * 5  # ...of 128 KiB each, over their own requests
    assert ds.stats()["bytes_downloaded"] == shard_bytes  # each byte counted once, retries aside
    assert ds.stats()["retries"] > 0
    assert not [p for p in (tmp_path / "c").rglob("*") if ".tmp-" in p.name or p.name.endswith(".part")]


@pytest.mark.parametrize("store", ["s3", "gs"])
def test_parts_on_object_stores(
    store: str,
    source: Path,
    tmp_path: Path,
    small_parts: list[int],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"ranged-{store}-{os.getpid()}-{id(tmp_path)}"
    if store == "s3":
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        s3.create_bucket(BUCKET)
        upload_tree(s3.put_object, source, prefix)
        env = s3_env(s3)
    else:
        gcs: FakeGCSServer = request.getfixturevalue("gcs_server")
        gcs.create_bucket(BUCKET)
        upload_tree(gcs.put_object, source, prefix)
        env = {"STORAGE_EMULATOR_HOST": gcs.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ds = StreamingDataset(remote=f"{store}://{BUCKET}/{prefix}", local=str(tmp_path / "c"), batch_size=10)
    try:
        assert _samples(ds) == _expected(source)
    finally:
        ds.close()
    assert len(small_parts) == SHARDS


def test_parts_with_forked_dataloader_workers(source: Path, tmp_path: Path, small_parts: list[int]) -> None:
    with StaticHTTPServer(source.parent) as server:
        ds = StreamingDataset(remote=f"{server.url}/data", local=str(tmp_path / "c"), batch_size=10)
        loader = StreamingDataLoader(ds, batch_size=10, num_workers=2, multiprocessing_context="fork")
        ids = sorted(i for batch in loader for i in batch["id"].tolist())
    assert ids == list(range(SHARDS * SAMPLES_PER_SHARD))
    for path in (tmp_path / "c").glob("shard.*"):
        assert path.read_bytes() == (source / path.name).read_bytes()


def test_part_size_follows_measured_throughput() -> None:
    now = [0.0]
    downloader = RangedDownloader(clock=lambda: now[0], min_part=4 << 20, max_part=16 << 20)
    assert downloader.part_size() == 4 << 20  # nothing measured yet: the smallest part
    # Before anything is measured, only an object of two of the largest parts is split: a smaller
    # first one runs whole and alone, so the link gauge learns what one connection gets.
    assert not downloader.splits(31 << 20) and downloader.splits(32 << 20)
    downloader.observe(20_000_000, 1.0)  # one connection got 20 MB/s: parts of half a second
    assert downloader.part_size() == 10_000_000
    for _ in range(20):
        downloader.observe(200_000_000, 1.0)  # a fast connection: capped at the largest part
    assert downloader.part_size() == 16 << 20
    for _ in range(20):
        downloader.observe(1_000_000, 1.0)  # a slow one: never below the smallest part
    assert downloader.part_size() == 4 << 20


class _Flaky(LocalBackend):
    """Local range reads that fail as told: ``missing`` raises ObjectNotFound, ``transient`` fails once,
    ``short`` answers once with its last 7 bytes missing (a complete-looking answer of the wrong length)."""

    def __init__(
        self, *, missing: int | None = None, transient: int | None = None, short: int | None = None
    ) -> None:
        super().__init__()
        self.missing, self.transient, self.short, self.calls = missing, transient, short, 0

    async def read_range(self, url: str, start: int, end: int) -> bytes:
        self.calls += 1
        if start == self.missing:
            raise ObjectNotFound(f"{url}: gone", url=url)
        if start == self.transient:
            self.transient = None
            raise TransientStorageError(f"{url}: connection reset", url=url)
        if start == self.short:
            self.short = None
            return (await super().read_range(url, start, end))[:-7]
        return await super().read_range(url, start, end)


async def test_failed_parts_retry_fail_typed_and_leave_nothing(tmp_path: Path) -> None:
    blob = os.urandom(10 * 1024)
    src = tmp_path / "object.bin"
    src.write_bytes(blob)
    policy = RetryPolicy(attempts=3, sleep=lambda _: asyncio.sleep(0))
    dest = tmp_path / "out.bin"

    def download(backend: LocalBackend, size: int = len(blob)) -> Any:
        return RangedDownloader(min_part=1024, max_part=1024).download(
            backend, str(src), size, dest, policy=policy, stats=RetryStats()
        )

    flaky = _Flaky(transient=4096)
    assert await download(flaky) == len(blob)
    assert dest.read_bytes() == blob and flaky.calls == 11  # ten parts, one of them twice
    dest.unlink()
    with pytest.raises(ObjectNotFound, match="gone"):
        await download(_Flaky(missing=5120))
    assert list(tmp_path.iterdir()) == [src]  # the partial file is gone
    # A part answered once with a complete-looking body of the wrong length (a hop that cut it and
    # lowered its Content-Length) is retried like any transient failure.
    short = _Flaky(short=3072)
    assert await download(short) == len(blob)
    assert dest.read_bytes() == blob and short.calls == 11
    dest.unlink()
    # An object of another length than the index lists, longer or shorter, answers so on every attempt:
    # after the last one it is a FormatError (the object differs, not the link).
    for size in (len(blob) - 10, len(blob) + 10):
        counting = _Flaky()
        with pytest.raises(FormatError, match=rf"3 attempt\(s\).*not the {size} bytes the index lists"):
            await download(counting, size)
        parts = -(-size // 1024)
        # The bad last part three times (1 + 2 retries), each other part at most once.
        assert 3 <= counting.calls <= parts + 2 and list(tmp_path.iterdir()) == [src]


@pytest.fixture(scope="module")
def big_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five shards of ~35 MB: more than two of the largest parts, so even a process's first download is
    split, with nothing patched (spawned workers see the defaults)."""
    root = tmp_path_factory.mktemp("big") / "data"
    with MDSWriter(out=str(root), columns={"id": "int", "blob": "bytes"}, size_limit=34 << 20) as w:
        for i in range(BIG_SAMPLES):
            w.write({"id": i, "blob": os.urandom(250_000)})
    return root


BIG_SAMPLES = 5 * 142


def test_default_parts_with_spawned_workers_under_a_cache_limit(big_shards: Path, tmp_path: Path) -> None:
    sizes = [p.stat().st_size for p in big_shards.glob("shard.*")]
    assert len(sizes) == 5 and min(sizes) >= 2 * ranged.MAX_PART
    index = (big_shards / "index.json").stat().st_size
    limit = index + 4 * max(sizes)  # the least allowed for 2 readers: 4 of the 5 shards, so evictions
    # Each connection capped (as an object store does), so the link gauge never finds one connection
    # filling the link: every download stays split.
    plan = FaultPlan(connection_bandwidth=40e6)
    with StaticHTTPServer(big_shards.parent) as server, ThreadedFaultProxy(server.url, plan) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data", local=str(tmp_path / "c"), batch_size=4, cache_limit=limit
        )
        loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
        assert sorted(i for batch in loader for i in batch["id"].tolist()) == list(range(BIG_SAMPLES))
        keys = [e.key for e in proxy.history]
    # Parts are ranges of at least MIN_PART bytes ("GET /data/shard.00000.mds bytes=a-b"); the first-
    # sample reads are a few KB.
    parts = [k for k in keys if "shard." in k and _range_bytes(k) >= ranged.MIN_PART]
    stats = ds.stats()
    assert stats["shards_downloaded"] >= 5 and stats["evictions"] > 0
    assert len(parts) >= 2 * stats["shards_downloaded"]  # each download in two parts at least
    assert sum(p.stat().st_size for p in (tmp_path / "c").glob("shard.*")) <= limit


def _range_bytes(key: str) -> int:
    """Bytes a proxy history key's range asks for (0 without a range)."""
    spec = key.rsplit(" ", 1)[-1]
    if not spec.startswith("bytes="):
        return 0
    first, _, last = spec.removeprefix("bytes=").partition("-")
    return int(last) - int(first) + 1 if first and last else 0
