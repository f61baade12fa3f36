"""A remote shard replaced while a job reads it: an ``ObjectChanged`` naming it, never a sample of the
other version or of two versions stitched together.

Each case rewrites shards in place with other bytes of the same size under a byte-identical
``index.json`` (no hashes: nothing in the index tells the versions apart, and the new samples are cut at
other offsets, so the old offsets would cut garbage). The version every answer reports (ETag, GCS's
content hashes) is what tells them apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from astreaming import MDSWriter, ObjectChanged, StreamingDataLoader, StreamingDataset
from astreaming.storage import ranged
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

from .remotes import BUCKET, s3_env, upload_tree

SAMPLES = 48
PER_SHARD = 6
BLOB = 100


def write(
    out: Path,
    version: int,
    *,
    per_shard: int = PER_SHARD,
    blob: int = BLOB,
    uneven: bool = True,
    samples: int | None = None,
) -> None:
    """Version 1: every blob ``blob`` bytes of 1. Version 2: bytes of 2, the same bytes per shard, split
    unevenly (or evenly, the same layout, with ``uneven=False``). ``samples``: how many (default
    ``SAMPLES``, or 4 shards' worth when ``per_shard`` is given)."""
    with MDSWriter(
        out=str(out), columns={"id": "int", "blob": "bytes"}, size_limit=per_shard * (blob + 12) + 40
    ) as w:
        if samples is None:
            samples = SAMPLES if per_shard == PER_SHARD else 4 * per_shard
        for i in range(samples):
            size = blob if version == 1 or not uneven else blob + (10 if i % 2 else -10)
            w.write({"id": i, "blob": bytes([version]) * size})


def rewrite(data: Path, put: Callable[[str, bytes], None], **sizes: Any) -> None:
    """Write version 2 next to ``data`` and upload its shards over version 1's (the index is the same)."""
    new = data.parent / f"{data.name}-v2-{uuid.uuid4().hex[:6]}"
    write(new, 2, **sizes)
    assert (new / "index.json").read_bytes() == (data / "index.json").read_bytes()
    for shard in sorted(new.glob("shard.*")):
        assert shard.stat().st_size == (data / shard.name).stat().st_size
        put(shard.name, shard.read_bytes())


def versions_seen(samples: list[dict[str, Any]]) -> set[int]:
    return {b for s in samples for b in set(bytes(s["blob"]))}


@pytest.fixture
def http_data(tmp_path: Path) -> Iterator[tuple[str, Path, Callable[[str, bytes], None]]]:
    site = tmp_path / "site"
    write(site / "data", 1)

    def put(name: str, data: bytes) -> None:
        tmp = site / "data" / f".{name}.new"
        tmp.write_bytes(data)
        os.replace(tmp, site / "data" / name)  # a new file: the server's ETag changes with it

    with StaticHTTPServer(site) as server:
        yield f"{server.url}/data", site / "data", put


def limited(remote: str, local: Path, source: Path) -> StreamingDataset:
    """Room for 3 of the 8 shards: a sweep evicts each shard after its use."""
    shard = max(p.stat().st_size for p in source.glob("shard.*"))
    limit = (source / "index.json").stat().st_size + 3 * shard
    return StreamingDataset(remote=remote, local=str(local), batch_size=4, cache_limit=limit)


def epoch(ds: StreamingDataset, workers: int) -> Iterator[dict[str, Any]]:
    if not workers:
        yield from ds  # type: ignore[misc]
        return
    loader = StreamingDataLoader(ds, batch_size=None, num_workers=workers, multiprocessing_context="spawn")
    yield from loader


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-spawn-workers"])
def test_a_shard_rewritten_after_its_eviction_is_object_changed(
    http_data: tuple[str, Path, Callable[[str, bytes], None]], tmp_path: Path, workers: int
) -> None:
    remote, source, put = http_data
    ds = limited(remote, tmp_path / "cache", source)
    first = list(epoch(ds, workers))
    assert sorted(int(s["id"]) for s in first) == list(range(SAMPLES)) and versions_seen(first) == {1}
    assert ds.stats()["evictions"] > 0
    rewrite(source, put)
    seen: list[dict[str, Any]] = []
    with pytest.raises(ObjectChanged, match=r"/data/shard\.\d{5}\.mds: the object changed") as info:
        for sample in epoch(ds, workers):
            seen.append(sample)
    assert "ETag" in str(info.value)
    assert versions_seen(seen) <= {1}  # what came before the error is the version the job started with


@pytest.mark.parametrize("store", ["s3", "gs"])
def test_object_stores_report_the_version_that_pins_a_shard(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "data"
    write(source, 1)
    prefix = f"versions-{store}-{uuid.uuid4().hex[:8]}"
    server: MotoS3Server | FakeGCSServer
    if store == "s3":
        server = request.getfixturevalue("s3_server")
        env = s3_env(server)
    else:
        server = request.getfixturevalue("gcs_server")
        env = {"STORAGE_EMULATOR_HOST": server.url}
    server.create_bucket(BUCKET)
    upload_tree(server.put_object, source, prefix)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ds = limited(f"{store}://{BUCKET}/{prefix}", tmp_path / "cache", source)
    try:
        assert versions_seen(list(ds)) == {1}
        if store == "gs":
            # The same bytes uploaded again (a conversion rerun): a new generation, the same content
            # hashes, so the shards evicted since are downloaded again and read on.
            for shard in sorted(source.glob("shard.*")):
                server.put_object(BUCKET, f"{prefix}/{shard.name}", shard.read_bytes())
            downloads = ds.stats()["shards_downloaded"]
            again = list(ds)
            assert sorted(int(s["id"]) for s in again) == list(range(SAMPLES)) and versions_seen(again) == {1}
            assert ds.stats()["shards_downloaded"] > downloads
        rewrite(source, lambda name, data: server.put_object(BUCKET, f"{prefix}/{name}", data))
        seen: list[dict[str, Any]] = []
        word = "ETag" if store == "s3" else "crc32c="
        with pytest.raises(ObjectChanged, match=rf"{store}://{BUCKET}/{prefix}/shard\.\d{{5}}\.mds.*{word}"):
            for sample in ds:
                seen.append(sample)
    finally:
        ds.close()
    assert versions_seen(seen) <= {1}


def test_parts_of_one_download_come_from_one_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One large shard in 4 parts, fetched one after the other; the object is replaced as the second
    # part is asked for. Before, the first part of version 1 and three of version 2 made one shard.
    part = 64 << 10
    monkeypatch.setattr(ranged, "MIN_PART", part)
    monkeypatch.setattr(ranged, "MAX_PART", part)
    monkeypatch.setattr(ranged, "MAX_PARALLEL", 1)
    site = tmp_path / "site"
    sizes = {"per_shard": 64, "blob": 4000}  # 4 shards of ~260 KB
    write(site / "data", 1, **sizes)
    new = tmp_path / "v2"
    write(new, 2, uneven=False, **sizes)  # the same layout: stitched parts would decode, silently mixed
    assert (new / "shard.00000.mds").stat().st_size == (site / "data" / "shard.00000.mds").stat().st_size
    shard_gets = []

    def replace_at_the_second_part(req: Any) -> bool:
        if req.path.endswith("shard.00000.mds"):
            shard_gets.append(req.headers.get("Range"))
            if len(shard_gets) == 2:
                os.replace(new / "shard.00000.mds", site / "data" / "shard.00000.mds")
        return False  # no fault: only the object changes

    with StaticHTTPServer(site) as server:
        plan = FaultPlan(match=replace_at_the_second_part)
        with ThreadedFaultProxy(server.url, plan) as proxy:
            ds = StreamingDataset(remote=f"{proxy.url}/data", local=str(tmp_path / "c"), batch_size=4)
            with pytest.raises(ObjectChanged, match=r"shard\.00000\.mds: the object changed"):
                list(ds)
    assert len(shard_gets) >= 2 and all(r and r.startswith("bytes=") for r in shard_gets)
    assert not (tmp_path / "c" / "shard.00000.mds").exists()  # nothing of either version published


def test_random_access_reads_offsets_and_samples_of_one_version(
    http_data: tuple[str, Path, Callable[[str, bytes], None]], tmp_path: Path
) -> None:
    remote, source, put = http_data
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"))
    assert ds.samples_per_shard[0] >= 2
    assert ds[0]["blob"] == b"\x01" * BLOB  # the offsets of shard 0 and one sample, by byte ranges
    assert not list((tmp_path / "cache").glob("shard.*"))
    rewrite(source, put)
    # The offsets read before would cut version 2's bytes at version 1's boundaries.
    with pytest.raises(ObjectChanged, match=r"/data/shard\.00000\.mds: the object changed"):
        ds[1]


def write_more(out: Path) -> None:
    """Another version of the dataset: more samples, so another index."""
    with MDSWriter(
        out=str(out), columns={"id": "int", "blob": "bytes"}, size_limit=PER_SHARD * (BLOB + 12) + 40
    ) as w:
        for i in range(SAMPLES + 12):
            w.write({"id": i, "blob": bytes([3]) * BLOB})


def replace_dataset(data: Path) -> None:
    new = data.parent / f"{data.name}-v3-{uuid.uuid4().hex[:6]}"
    write_more(new)
    for path in sorted(new.iterdir(), key=lambda p: p.name == "index.json"):  # the index last
        os.replace(path, data / path.name)


def test_an_index_rewritten_between_epochs_stops_the_next_epoch(
    http_data: tuple[str, Path, Callable[[str, bytes], None]], tmp_path: Path
) -> None:
    remote, source, _ = http_data
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=4)
    assert len(list(ds)) == SAMPLES
    replace_dataset(source)
    with pytest.raises(
        ObjectChanged, match=rf"/data/index\.json: index\.json changed .*\({SAMPLES} samples then"
    ):
        next(iter(ds))
    assert StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=4).num_samples > SAMPLES


def test_later_epochs_read_the_index_again_only_when_its_version_changed(tmp_path: Path) -> None:
    # Every rank checks the index every epoch, and an index can be tens of MB: after one read that found
    # the same bytes, an epoch asks only for the index's size and version. The same bytes written again
    # (a new ETag) are read once more and pass; other bytes are an ObjectChanged.
    site = tmp_path / "site"
    write(site / "data", 1)
    index = site / "data" / "index.json"
    asked: list[str] = []

    def log(req: Any) -> bool:
        if req.path.endswith("/index.json"):
            asked.append(req.method if "Range" not in req.headers else "RANGE")
        return False

    with StaticHTTPServer(site) as server, ThreadedFaultProxy(server.url, FaultPlan(match=log)) as proxy:
        ds = StreamingDataset(remote=f"{proxy.url}/data", local=str(tmp_path / "cache"), batch_size=4)
        reads = asked.count("GET")
        for _ in range(3):
            assert len(list(ds)) == SAMPLES
        assert asked.count("GET") == reads + 1  # epoch 1 read the bytes; epochs 2 and 3 only checked
        checks = len(asked) - asked.count("GET")
        assert checks >= 2
        same = index.read_bytes()
        os.remove(index)
        index.write_bytes(same)  # a new file: a new ETag, the same bytes
        os.utime(index, (1, 1))
        assert len(list(ds)) == SAMPLES and asked.count("GET") == reads + 2
        assert len(list(ds)) == SAMPLES and asked.count("GET") == reads + 2
        replace_dataset(site / "data")
        with pytest.raises(ObjectChanged, match=r"/data/index\.json: index\.json changed"):
            list(ds)


JOB = Path(__file__).with_name("version_rank_job.py")


def test_ranks_built_on_two_versions_of_the_index_fail_at_the_next_epoch(
    http_data: tuple[str, Path, Callable[[str, bytes], None]], tmp_path: Path
) -> None:
    # Rank 0 is built, then the dataset is written again with more samples, then rank 1 is built: the
    # two would walk different shard lists and different numbers of batches (a DDP job hangs at its
    # next collective). Rank 0 finds the index changed when its second epoch starts and ends with the
    # error naming index.json (a launcher such as torchrun then ends the other ranks).
    remote, source, _ = http_data
    results = [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = []
    for rank, result in enumerate(results):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        argv = [sys.executable, str(JOB), remote, str(tmp_path / "cache"), str(result)]
        procs.append(subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True))
        while not Path(f"{result}.built").exists():
            assert procs[-1].poll() is None, procs[-1].communicate()[1][-3000:]
            time.sleep(0.02)
        if rank == 0:
            replace_dataset(source)
    for result in results:
        Path(f"{result}.go").touch()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    first, second = (json.loads(r.read_text()) for r in results)
    assert first["samples"] == SAMPLES and second["samples"] == SAMPLES + 12
    assert (
        first["error"][0] == "ObjectChanged" and "/data/index.json: index.json changed" in first["error"][1]
    )
    assert len(first["epochs"]) == 1  # its first epoch ran (on what it had read), the second did not start
    assert "error" not in second and len(second["epochs"]) == 2
