"""Environment faults (issue 10): a refused port, an unresolvable host, a bucket that does not exist and
wrong credentials each give a typed error naming the problem, after a bounded number of attempts, and
leave nothing in the cache that a later run would trust (the later run reads every sample correctly).

No test reaches a real network: hosts are 127.0.0.1 or under the reserved ``.invalid`` domain.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from astreaming import StreamingDataset
from astreaming.errors import ObjectNotFound, PermissionDenied, StorageError, TransientStorageError
from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer

from .conftest import MakeDataset

UNRESOLVABLE = "astreaming-test.invalid"  # RFC 2606: never resolves


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _trusted_leftovers(cache: Path) -> list[str]:
    """Files a later run could mistake for published data: anything but the directory itself."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def _epoch(remote: str, cache: Path) -> list[int]:
    with StreamingDataset(remote=remote, local=str(cache), batch_size=1, download_retry=0) as ds:
        return [int(s["id"]) for s in ds]


def test_refused_port_then_recovery(make_dataset: MakeDataset, tmp_path: Path) -> None:
    root = make_dataset()
    cache = tmp_path / "cache"
    port = _free_port()
    with pytest.raises(TransientStorageError, match=f"connection refused by 127.0.0.1:{port}") as info:
        StreamingDataset(
            remote=f"http://127.0.0.1:{port}/ds", local=str(cache), batch_size=1, download_retry=1
        )
    assert "after 2 attempt(s)" in str(info.value)  # retried download_retry times, then given up
    assert _trusted_leftovers(cache) == []
    site = tmp_path / "site"
    shutil.copytree(root, site / "ds")
    with StaticHTTPServer(site) as server:
        assert _epoch(f"{server.url}/ds", cache) == list(range(60))


def test_unresolvable_host(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(TransientStorageError, match=f"cannot resolve host '{UNRESOLVABLE}'") as info:
        StreamingDataset(remote=f"http://{UNRESOLVABLE}/ds", local=str(cache), batch_size=1, download_retry=0)
    assert "after 1 attempt(s)" in str(info.value)
    assert _trusted_leftovers(cache) == []


@pytest.mark.parametrize("endpoint", [f"http://127.0.0.1:{_free_port()}", f"http://s3.{UNRESOLVABLE}"])
def test_unreachable_s3_endpoint(
    aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    cache = tmp_path / "cache"
    with pytest.raises(TransientStorageError, match=r"s3://bucket/ds/index\.json") as info:
        StreamingDataset(remote="s3://bucket/ds", local=str(cache), batch_size=1, download_retry=0)
    assert endpoint.split("//")[1] in str(info.value)  # names the endpoint it could not reach
    assert _trusted_leftovers(cache) == []


def test_nonexistent_bucket(
    s3_server: MotoS3Server, aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.url)
    cache = tmp_path / "cache"
    with pytest.raises(ObjectNotFound, match="NoSuchBucket") as info:
        StreamingDataset(remote="s3://astreaming-no-such-bucket/ds", local=str(cache), batch_size=1)
    assert "s3://astreaming-no-such-bucket/ds/index.json" in str(info.value)
    assert _trusted_leftovers(cache) == []


def test_nonexistent_gcs_bucket(
    gcs_server: FakeGCSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    cache = tmp_path / "cache"
    with pytest.raises(ObjectNotFound) as info:
        StreamingDataset(remote="gs://astreaming-no-such-bucket/ds", local=str(cache), batch_size=1)
    assert "gs://astreaming-no-such-bucket/ds/index.json" in str(info.value)
    assert _trusted_leftovers(cache) == []


def test_wrong_s3_credentials_are_permission_denied_at_once(
    s3_server: MotoS3Server,
    aws_env: None,
    make_dataset: MakeDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import moto.settings

    root = make_dataset()
    prefix = f"wrong-key-{tmp_path.name}"
    s3_server.create_bucket("astreaming-env")
    for path in sorted(root.iterdir()):
        s3_server.put_object("astreaming-env", f"{prefix}/{path.name}", path.read_bytes())
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.url)
    remote = f"s3://astreaming-env/{prefix}"
    assert _epoch(remote, tmp_path / "ok") == list(range(60))  # the store answers the usual keys
    # moto checks signatures against the access keys it issued once auth is on (its in-process setting,
    # restored after the test): this key was never issued, as a revoked or mistyped key would not be.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    secret = "wJalrXUtnFEMI-astreaming-not-a-real-secret"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAASTREAMINGWRONG01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    cache = tmp_path / "cache"
    with pytest.raises(PermissionDenied) as info:
        StreamingDataset(remote=remote, local=str(cache), batch_size=1, download_retry=5)
    message = str(info.value)
    assert f"{remote}/index.json" in message and "InvalidAccessKeyId" in message
    assert "attempt" not in message  # refused at once, not retried download_retry times
    assert secret not in message and secret not in repr(info.value)
    assert _trusted_leftovers(cache) == []


def test_shard_missing_mid_epoch_then_recovery(make_dataset: MakeDataset, tmp_path: Path) -> None:
    root = make_dataset(compression="zstd")
    remote = tmp_path / "remote"
    shutil.copytree(root, remote)
    victim = sorted(remote.glob("*.zstd"))[3]
    victim.unlink()
    cache = tmp_path / "cache"
    with pytest.raises(StorageError, match=victim.name.replace(".", r"\.")):
        _epoch(str(remote), cache)
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name or p.suffix in (".part", ".lock")]
    shutil.copy(root / victim.name, victim)
    assert _epoch(str(remote), cache) == list(range(60))


def test_wrong_signature_is_permission_denied(make_dataset: MakeDataset, tmp_path: Path) -> None:
    """Wrong credentials on a signed HTTP URL (the query-string server of the SAS tests)."""
    from .test_query_urls import QUERY, SignedServer

    site = tmp_path / "site"
    shutil.copytree(make_dataset(), site / "ds")
    cache = tmp_path / "cache"
    with SignedServer(site) as server, pytest.raises(PermissionDenied, match="access denied"):
        StreamingDataset(remote=f"{server.url}/ds?{QUERY}x", local=str(cache), batch_size=1)
    assert _trusted_leftovers(cache) == []
