"""Upload scheduling and failures: concurrency, index last, typed errors, retries, no index on failure."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from output_fakes import Script
from output_remotes import Remote

from astreaming.errors import ObjectNotFound, PermissionDenied, StorageError, TransientStorageError
from astreaming.format.local import LocalDataset
from astreaming.output import MDSWriter, RemoteUploader

COLUMNS = {"id": "int", "blob": "bytes"}


def sample(i: int) -> dict[str, Any]:
    return {"id": i, "blob": bytes([i % 256]) * 150}


def shard_count(w: MDSWriter) -> int:
    return len(w.shards)


def wait_until(predicate: Any) -> None:
    """Poll ``predicate`` (pytest-timeout bounds a condition that never comes)."""
    while not predicate():
        time.sleep(0.01)


def test_uploads_run_concurrently_and_never_block_the_writer(script: Script, tmp_path: Path) -> None:
    script.gate = threading.Event()  # no upload can finish until the writer has written everything
    w = MDSWriter(
        out=f"scripted://{tmp_path}/r",
        backend=script.backend(),
        columns=COLUMNS,
        size_limit=400,
        max_workers=3,
    )
    for i in range(14):
        w.write(sample(i))  # would wait forever if a write waited for an upload
    shards = shard_count(w) + 1  # + the shard finish() flushes
    assert shards >= 7
    # The writer handed over 6 shards while none of their uploads could complete.
    assert w.uploader.statistics().files_uploaded == 0  # type: ignore[union-attr]
    wait_until(lambda: w.uploader.statistics().peak_in_flight == 3)  # type: ignore[union-attr]
    script.gate.set()
    w.finish()
    stats = w.uploader.statistics()  # type: ignore[union-attr]
    assert stats.peak_in_flight == 3  # exactly max_workers at a time
    assert stats.files_uploaded == shards + 1
    ds = LocalDataset(tmp_path / "r")
    assert [ds[i]["id"] for i in range(len(ds))] == list(range(14))


def test_index_is_uploaded_after_every_shard_finished(script: Script, tmp_path: Path) -> None:
    script.delay = 0.05
    with MDSWriter(
        out=f"scripted://{tmp_path}/r",
        backend=script.backend(),
        columns=COLUMNS,
        size_limit=400,
        max_workers=4,
    ) as w:
        for i in range(20):
            w.write(sample(i))
    events = script.events
    index_start = next(t for what, name, t in events if what == "start" and name == "index.json")
    shard_ends = [t for what, name, t in events if what == "end" and name != "index.json"]
    assert len(shard_ends) == len(w.shards)
    assert max(shard_ends) <= index_start
    assert events[-1][:2] == ("end", "index.json")


def test_failure_raises_at_next_write_and_publishes_no_index(script: Script, tmp_path: Path) -> None:
    script.fail["shard.00001.mds"] = lambda url: PermissionDenied(f"{url}: denied", url=url)
    local = tmp_path / "local"
    w = MDSWriter(
        out=(str(local), f"scripted://{tmp_path}/r"),
        backend=script.backend(),
        columns=COLUMNS,
        size_limit=400,
    )
    with pytest.raises(PermissionDenied, match=r"r/shard\.00001\.mds") as info, w:
        for i in range(100):
            w.write(sample(i))
            if i == 10:
                # Shard 1 is flushed by now; once its upload has failed, the next write raises.
                wait_until(lambda: w.uploader.error is not None)  # type: ignore[union-attr]
                w.write(sample(i))
                pytest.fail("write() after a failed upload did not raise")
    assert info.value.url is not None and info.value.url.endswith("r/shard.00001.mds")
    assert not (tmp_path / "r" / "index.json").exists()
    assert not (local / "index.json").exists()
    # Shard 0 was uploaded or cancelled in flight (no partial file either way); the failed one stays local.
    uploaded = {p.name for p in (tmp_path / "r").iterdir()} if (tmp_path / "r").exists() else set()
    assert uploaded <= {"shard.00000.mds"}
    assert (local / "shard.00001.mds").exists()


@pytest.mark.parametrize("keep_local", [False, True])
def test_failure_at_finish(script: Script, tmp_path: Path, keep_local: bool) -> None:
    local = tmp_path / "local"
    w = MDSWriter(
        out=(str(local), f"scripted://{tmp_path}/r"),
        backend=script.backend(),
        columns=COLUMNS,
        size_limit=400,
        keep_local=keep_local,
    )
    for i in range(12):
        w.write(sample(i))
    # The last shard, flushed by finish(), is the one whose upload fails.
    last = f"shard.{len(w.shards):05}.mds"
    script.fail[last] = lambda url: ObjectNotFound(f"{url}: no such bucket", url=url)
    with pytest.raises(ObjectNotFound, match=re.escape(last)):
        w.finish()
    with pytest.raises(ObjectNotFound):  # finish() again keeps reporting the failure
        w.finish()
    assert not (tmp_path / "r" / "index.json").exists()
    # Without keep_local the uploaded shards are gone locally, so a local index would lie.
    assert (local / "index.json").exists() == keep_local
    if keep_local:
        assert len(LocalDataset(local)) == 12


def test_failure_in_exit_raises_typed_error(script: Script, tmp_path: Path) -> None:
    # The failure happens in the last shard, uploaded during __exit__ -> finish().
    script.fail["shard.00000.mds"] = lambda url: PermissionDenied(f"{url}: denied", url=url)
    with (
        pytest.raises(PermissionDenied, match=r"shard\.00000\.mds"),
        MDSWriter(out=f"scripted://{tmp_path}/r", backend=script.backend(), columns=COLUMNS) as w,
    ):
        w.write(sample(0))
    assert not (tmp_path / "r" / "index.json").exists()


def test_local_target_errors_become_storage_errors(tmp_path: Path) -> None:
    # The "remote" is a directory below a regular file: nothing can be written there.
    (tmp_path / "file").write_bytes(b"x")
    w = MDSWriter(out=(str(tmp_path / "local"), str(tmp_path / "file" / "r")), columns=COLUMNS, exist_ok=True)
    with pytest.raises(StorageError, match=r"file/r/shard\.00000\.mds"), w:
        w.write(sample(0))


def test_transient_failures_are_retried(script: Script, tmp_path: Path) -> None:
    for k in range(3):
        script.fail_once[f"shard.{k:05}.mds"] = lambda url: TransientStorageError(f"{url}: 503", url=url)
    with MDSWriter(
        out=f"scripted://{tmp_path}/r", backend=script.backend(), columns=COLUMNS, size_limit=400, retry=2
    ) as w:
        for i in range(10):
            w.write(sample(i))
    uploader = w.uploader
    assert isinstance(uploader, RemoteUploader)
    assert uploader.retry_stats.retries == 3
    assert len(LocalDataset(tmp_path / "r")) == 10


def test_retry_one_means_a_single_attempt(script: Script, tmp_path: Path) -> None:
    script.fail_once["shard.00000.mds"] = lambda url: TransientStorageError(f"{url}: 503", url=url)
    w = MDSWriter(out=f"scripted://{tmp_path}/r", backend=script.backend(), columns=COLUMNS, retry=1)
    with pytest.raises(TransientStorageError, match="after 1 attempt"), w:
        w.write(sample(0))
    assert not (tmp_path / "r" / "index.json").exists()


def test_missing_bucket(cloud: Remote, tmp_path: Path) -> None:
    scheme = cloud.url.split("://")[0]
    url = f"{scheme}://astreaming-no-such-bucket/ds"
    # exist_ok=False: the remote is checked up front, which already fails, naming the URL.
    with pytest.raises(StorageError, match="astreaming-no-such-bucket"):
        MDSWriter(out=url, columns=COLUMNS)
    # exist_ok=True lists too (to unpublish the partition indexes below out): the same typed failure.
    with pytest.raises(StorageError, match="astreaming-no-such-bucket") as info:
        MDSWriter(out=url, columns=COLUMNS, exist_ok=True, size_limit=400)
    assert isinstance(info.value, (ObjectNotFound, PermissionDenied))


def test_many_shards_through_a_real_server(cloud: Remote, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(int(n)) for n in rng.integers(10, 3000, 300)]
    with MDSWriter(out=cloud.url, columns=COLUMNS, size_limit=8000, max_workers=16, compression="zstd") as w:
        for i, blob in enumerate(blobs):
            w.write({"id": i, "blob": blob})
    assert len(w.shards) > 30
    ds = LocalDataset(cloud.download(tmp_path / "copy"))
    assert [ds[i]["blob"] for i in range(len(ds))] == blobs
    assert w.uploader.statistics().peak_in_flight > 1  # type: ignore[union-attr]


def test_unexpected_backend_errors_still_block_the_index(script: Script, tmp_path: Path) -> None:
    script.fail["shard.00000.mds"] = lambda url: RuntimeError("backend bug")
    w = MDSWriter(out=f"scripted://{tmp_path}/r", backend=script.backend(), columns=COLUMNS)
    with pytest.raises(StorageError, match="backend bug") as info, w:
        w.write(sample(0))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not (tmp_path / "r" / "index.json").exists()


def test_no_local_index_stands_beside_shards_being_uploaded(script: Script, tmp_path: Path) -> None:
    """``(local, remote)`` without keep_local: each shard is deleted locally once uploaded, so an
    ``index.json`` written locally before the uploads end would, if the process were killed then (Ctrl-C
    is handled, SIGKILL is not), be left describing shards that are gone: an interrupted write
    publishing a dataset. The index is written under a temporary name and only uploaded."""
    script.gate = threading.Event()  # every upload waits: finish() stops where a kill would find it
    local = tmp_path / "local"
    w = MDSWriter(
        out=(str(local), f"scripted://{tmp_path}/r"),
        backend=script.backend(),
        columns=COLUMNS,
        size_limit=400,
    )
    for i in range(12):
        w.write(sample(i))
    finisher = threading.Thread(target=w.finish)
    finisher.start()
    try:
        wait_until(
            lambda: (
                any(p.name.endswith("index.json.upload.tmp") for p in local.iterdir())
                or (local / "index.json").exists()
            )
        )
        assert not (local / "index.json").exists()
    finally:
        script.gate.set()
        finisher.join()
    assert [LocalDataset(tmp_path / "r")[i]["id"] for i in range(12)] == list(range(12))
    assert not local.exists()  # every file uploaded and deleted, the directory removed


def test_a_shard_past_the_multipart_threshold_uploads_with_default_settings(
    cloud: Remote, tmp_path: Path
) -> None:
    """With the backends' default thresholds: a 9 MiB shard takes the resumable (gs) or multipart (s3)
    path. gs once sent each 16 MiB chunk as raw bytes, which aiohttp warns may block the event loop (a
    ResourceWarning per chunk; under ``-W error`` the upload failed)."""
    blob = np.random.default_rng(1).bytes(9 << 20)
    with MDSWriter(out=cloud.url, columns=COLUMNS, size_limit=None) as w:
        w.write({"id": 7, "blob": blob})
    ds = LocalDataset(cloud.download(tmp_path / "copy"))
    assert ds[0]["id"] == 7 and ds[0]["blob"] == blob
