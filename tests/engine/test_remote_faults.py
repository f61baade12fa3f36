"""The engine against an HTTP store behind the fault proxy: prioritisation, retries, typed failures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from astreaming import FormatError, MDSWriter, StreamingDataLoader, StreamingDataset, TransientStorageError
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

SHARD_BYTES = 100_000
SAMPLES_PER_SHARD = 10


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StaticHTTPServer, Path]]:
    """16 uncompressed shards of ~100 KB of incompressible bytes, served over HTTP."""
    root = tmp_path_factory.mktemp("served")
    with MDSWriter(
        out=str(root / "data"), columns={"id": "int", "blob": "bytes"}, size_limit=SHARD_BYTES + 2000
    ) as w:
        for i in range(16 * SAMPLES_PER_SHARD):
            w.write({"id": i, "blob": os.urandom(SHARD_BYTES // SAMPLES_PER_SHARD)})
    with StaticHTTPServer(root) as server:
        yield server, root / "data"


def test_first_sample_costs_one_shard_not_the_window(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, data = served
    latency, bandwidth = 0.05, 500_000.0  # a shared link: the 8-download window would split it 8 ways
    with ThreadedFaultProxy(server.url, FaultPlan(latency=latency, bandwidth=bandwidth)) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data", local=str(tmp_path / "c"), batch_size=10, predownload=1000
        )
        it = iter(ds)
        first = next(it)
        # Counted in bytes, not seconds (the same on a loaded machine): when the first sample arrives
        # the link has carried about one shard (plus the index), not a slice of each of 8 shards.
        sent_at_first = proxy.stats.bytes_sent
        rest = list(it)
    assert first["id"] == 0
    assert len(rest) == 16 * SAMPLES_PER_SHARD - 1
    assert sent_at_first < 2.5 * SHARD_BYTES, sent_at_first
    # (The cold epoch's time against the link floor is measured in benchmarks/remote_epoch.py.)
    assert ds.stats()["bytes_downloaded"] == sum(p.stat().st_size for p in data.glob("shard.*"))


def test_every_fault_is_survived_with_identical_samples(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    plan = FaultPlan(
        error_rate=0.15,
        retry_after=0.01,
        reset_rate=0.1,
        truncate_rate=0.1,
        stall_rate=0.05,
        stall_seconds=5.0,
        short_rate=0.1,
        seed=7,
        match=lambda r: "shard." in r.path,
    )
    with ThreadedFaultProxy(server.url, plan) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data",
            local=str(tmp_path / "f"),
            batch_size=10,
            download_retry=8,
            download_timeout=1.0,
        )
        got = [(s["id"], s["blob"]) for s in ds]
        shorts = proxy.stats.shorts
    clean = StreamingDataset(remote=f"{server.url}/data", local=str(tmp_path / "g"), batch_size=10)
    assert got == [(s["id"], s["blob"]) for s in clean]
    assert ds.stats()["retries"] > 0
    assert shorts > 0  # complete-looking bodies of the wrong length were retried too


def test_an_object_shorter_than_its_index_says_is_a_format_error_after_the_retries(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    # Every answer for shard 3 is cut and announced at its cut length, as an object rewritten since
    # the index was written would be: retried, then a FormatError naming the shard and both sizes.
    plan = FaultPlan(short_rate=1.0, match=lambda r: "shard.00003" in r.path)
    with ThreadedFaultProxy(server.url, plan) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data", local=str(tmp_path / "s"), batch_size=10, download_retry=2
        )
        seen = []
        with pytest.raises(
            FormatError, match=r"shard\.00003\.mds.* 3 attempt\(s\).*but the index says"
        ) as info:
            for sample in ds:
                seen.append(sample["id"])
        assert proxy.stats.shorts == 3
    assert "object differs from what the index lists" in str(info.value)
    assert seen == list(range(3 * SAMPLES_PER_SHARD))
    assert not list((tmp_path / "s").rglob("shard.00003*"))  # nothing of it kept in the cache


def test_exhausted_retries_raise_in_the_consumer(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    plan = FaultPlan(error_rate=1.0, error_statuses=(503,), match=lambda r: "shard.00003" in r.path)
    with ThreadedFaultProxy(server.url, plan) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data", local=str(tmp_path / "h"), batch_size=10, download_retry=1
        )
        seen = []
        with pytest.raises(TransientStorageError, match=r"shard\.00003\.mds"):
            for sample in ds:
                seen.append(sample["id"])
        # Bounded by attempts, not by a clock: the first try and download_retry=1 retry, then the error.
        assert ds.stats()["retries"] == 1
    # Everything before the failed shard was yielded; nothing after it (no silent skip).
    assert seen == list(range(3 * SAMPLES_PER_SHARD))


def test_worker_download_failure_raises_in_the_main_process(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    plan = FaultPlan(error_rate=1.0, error_statuses=(500,), match=lambda r: "shard.00005" in r.path)
    with ThreadedFaultProxy(server.url, plan) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data", local=str(tmp_path / "w"), batch_size=10, download_retry=0
        )
        loader = StreamingDataLoader(ds, batch_size=10, num_workers=2)
        with pytest.raises(TransientStorageError, match=r"shard\.00005\.mds"):
            list(loader)


def test_random_access_reads_byte_ranges_of_uncached_shards(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, data = served
    local = tmp_path / "r"
    ds = StreamingDataset(remote=f"{server.url}/data", local=str(local))
    expected = StreamingDataset(remote=str(data), local=str(tmp_path / "ref"))
    for i in (37, 5, 159, 38):
        sample = ds[i]
        assert sample["id"] == i
        assert sample["blob"] == expected[i]["blob"]
    assert not list(local.glob("shard.*"))  # nothing downloaded whole
    stats = ds.stats()  # range reads count as downloaded bytes, not as shards downloaded
    assert stats["shards_downloaded"] == 0 and stats["range_reads"] >= 4
    assert 0 < stats["bytes_downloaded"] < sum(p.stat().st_size for p in data.glob("shard.*"))
    # A map-style pass over one shard switches to downloading it once.
    assert [ds[i]["id"] for i in range(40, 50)] == list(range(40, 50))
    assert (local / "shard.00004.mds").exists()


def test_a_server_that_never_answers_times_out_in_spawned_workers(
    served: tuple[StaticHTTPServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    with ThreadedFaultProxy(server.url, FaultPlan()) as proxy:
        ds = StreamingDataset(
            remote=f"{proxy.url}/data",
            local=str(tmp_path / "n"),
            batch_size=10,
            download_retry=1,
            download_timeout=0.5,
        )
        forwarded = proxy.stats.forwarded  # the index
        proxy.plan = FaultPlan(latency=3600.0)  # from now on every request is accepted, never answered
        loader = StreamingDataLoader(ds, batch_size=10, num_workers=2, multiprocessing_context="spawn")
        # Each attempt ends at download_timeout: the error reaches the main process naming the shard.
        with pytest.raises(
            TransientStorageError,
            match=r"shard\.\d{5}\.mds: download failed after 2 attempt\(s\).*timed out after 0\.5 s",
        ):
            list(loader)
        assert proxy.stats.forwarded == forwarded  # no shard request was answered
