"""Uploads to fake-gcs-server through the fault-injecting proxy: 5xx/429 are retried, exhaustion is typed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from output_remotes import GCS_BUCKET, Remote

from astreaming.errors import TransientStorageError
from astreaming.format.local import LocalDataset
from astreaming.output import MDSWriter, RemoteUploader, merge_index
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import FakeGCSServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

COLUMNS = {"id": "int", "blob": "bytes"}


def _uploads(request: object) -> bool:
    return getattr(request, "method", "") == "POST" and "/upload/" in getattr(request, "path", "")


@pytest.fixture
def proxied_gcs(gcs_server: FakeGCSServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedFaultProxy]:
    with ThreadedFaultProxy(gcs_server.url) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        monkeypatch.delenv("GCS_KEY", raising=False)
        yield proxy


@pytest.fixture
def gcs(request: pytest.FixtureRequest, tmp_path: Path, proxied_gcs: ThreadedFaultProxy) -> Remote:
    from output_remotes import make_remote

    remote = make_remote("gs", request, tmp_path)
    # make_remote pointed the client at the server itself; go through the proxy instead.
    request.getfixturevalue("monkeypatch").setenv("STORAGE_EMULATOR_HOST", proxied_gcs.url)
    assert remote.url.startswith(f"gs://{GCS_BUCKET}/")
    return remote


def test_transient_errors_are_retried(gcs: Remote, proxied_gcs: ThreadedFaultProxy, tmp_path: Path) -> None:
    proxied_gcs.plan = FaultPlan(error_rate=0.4, error_statuses=(500, 503), seed=3, match=_uploads)
    with MDSWriter(out=gcs.url, columns=COLUMNS, size_limit=600, retry=6, max_workers=4) as w:
        for i in range(30):
            w.write({"id": i, "blob": bytes([i]) * 200})
    assert proxied_gcs.stats.errors > 0
    uploader = w.uploader
    assert isinstance(uploader, RemoteUploader)
    assert uploader.retry_stats.retries >= proxied_gcs.stats.errors
    ds = LocalDataset(gcs.download(tmp_path / "copy"))
    assert [ds[i]["blob"] for i in range(len(ds))] == [bytes([i]) * 200 for i in range(30)]


def test_exhausted_retries_raise_and_publish_no_index(gcs: Remote, proxied_gcs: ThreadedFaultProxy) -> None:
    proxied_gcs.plan = FaultPlan(error_rate=1.0, error_statuses=(503,), seed=1, match=_uploads)
    w = MDSWriter(out=gcs.url, columns=COLUMNS, size_limit=600, retry=2)
    with pytest.raises(TransientStorageError, match=r"after 2 attempt") as info, w:
        for i in range(30):
            w.write({"id": i, "blob": bytes([i]) * 200})
    assert GCS_BUCKET in str(info.value) and "/shard." in str(info.value)
    proxied_gcs.plan = FaultPlan()
    assert gcs.listing() == []  # no shard, and above all no index.json


def test_a_503_storm_on_the_merged_index_publishes_it_nowhere(
    gcs: Remote, proxied_gcs: ThreadedFaultProxy, tmp_path: Path
) -> None:
    """merge_index to ``(local, remote)``: when the remote index cannot be uploaded, no local one either.

    The partitions are remote only, so a local index.json left behind would describe files that are not
    there, and claim a merge that did not happen.
    """
    golden = Path(__file__).resolve().parent.parent / "golden" / "output" / "merged" / "data"
    for path in sorted(golden.rglob("*")):
        rel = path.relative_to(golden).as_posix()
        if path.is_file() and rel != "index.json":
            gcs.put(rel, path.read_bytes())
    local = tmp_path / "local"
    parts = [f"{gcs.url}/{p}/index.json" for p in ("0", "1")]
    proxied_gcs.plan = FaultPlan(error_rate=1.0, error_statuses=(503,), seed=2, match=_uploads)
    with pytest.raises(TransientStorageError, match=r"index\.json.*after 3 attempt") as info:
        merge_index(parts, (str(local), gcs.url), download_timeout=30)
    assert f"{gcs.url}/index.json" in str(info.value)
    assert not (local / "index.json").exists()
    proxied_gcs.plan = FaultPlan()
    assert "index.json" not in gcs.listing()
    merge_index(parts, (str(local), gcs.url), download_timeout=30)  # the rerun publishes both
    assert (
        gcs.get("index.json") == (golden / "index.json").read_bytes() == (local / "index.json").read_bytes()
    )
