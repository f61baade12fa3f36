"""Credentials never appear in logs, exception messages, repr() or pickles; TLS is verified by default
(issue 10: secrets suite)."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from astreaming import Stream, StreamingDataset
from astreaming.errors import AstreamingError, StorageError
from astreaming.storage.azure import AzureBackend
from astreaming.storage.gcs_hmac import GCSHMACBackend
from astreaming.testing.servers import MotoS3Server

from .conftest import MakeDataset
from .tls import HTTPSStaticServer, self_signed

SECRET = "sEcReT0123456789abcdefSECRET"
TOKEN = "tOkEn0123456789SESSIONTOKEN"
SIG = "SiGnAtUrE0123456789"


def _leaks(text: str) -> list[str]:
    return [s for s in (SECRET, TOKEN, SIG) if s in text]


@pytest.fixture
def s3_remote(
    s3_server: MotoS3Server, aws_env: None, make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.url)
    root = make_dataset()
    bucket = "secrets"
    s3_server.create_bucket(bucket)
    for path in root.iterdir():
        s3_server.put_object(bucket, f"ds/{path.name}", path.read_bytes())
    return f"s3://{bucket}/ds"


def test_s3_credentials_stay_out_of_logs_errors_repr_and_pickles(
    s3_remote: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="astreaming")
    ds = StreamingDataset(remote=s3_remote, local=str(tmp_path / "cache"), batch_size=1)
    assert sum(1 for _ in ds) == 60
    with pytest.raises(AstreamingError) as info:
        StreamingDataset(remote=s3_remote + "-missing", local=str(tmp_path / "c2"), batch_size=1)
    texts = [
        caplog.text,
        str(info.value),
        repr(info.value),
        repr(ds),
        repr(ds.streams),
        str(pickle.dumps(ds)),
    ]
    assert [t for t in texts if _leaks(t)] == []
    # astreaming never switches botocore's (token-printing) DEBUG logging on.
    botocore = logging.getLogger("botocore")
    assert not botocore.isEnabledFor(logging.DEBUG)
    assert all(isinstance(h, logging.NullHandler) for h in botocore.handlers)
    ds.close()


def test_default_logging_prints_nothing_secret(s3_remote: str, tmp_path: Path) -> None:
    """A fresh interpreter with no logging configuration: an epoch and a failure print no credential."""
    script = textwrap.dedent(
        f"""
        import logging
        from astreaming import StreamingDataset
        ds = StreamingDataset(remote={s3_remote!r}, local={str(tmp_path / "cache")!r}, batch_size=1)
        print(sum(1 for _ in ds))
        try:
            StreamingDataset(remote={s3_remote + "-gone"!r}, local={str(tmp_path / "c2")!r}, batch_size=1)
        except Exception as exc:
            print(type(exc).__name__, exc)
        print("botocore-debug", logging.getLogger("botocore").isEnabledFor(logging.DEBUG))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "60"
    assert "botocore-debug False" in done.stdout
    assert _leaks(done.stdout + done.stderr) == []


def test_url_tokens_are_redacted_in_reprs(tmp_path: Path) -> None:
    remote = f"https://user:{SECRET}@example.invalid/ds?sv=1&sig={SIG}"
    stream = Stream(remote=remote, local=str(tmp_path))
    assert _leaks(repr(stream)) == []
    assert "REDACTED" in repr(stream)


def test_backend_pickles_leave_environment_credentials_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCS_KEY", "GOOGKEYID")
    monkeypatch.setenv("GCS_SECRET", SECRET)
    monkeypatch.setenv("AZURE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_ACCOUNT_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", f"sv=1&sig={SIG}")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", f"AccountName=acct;AccountKey={SECRET}")
    for backend in (GCSHMACBackend(), AzureBackend()):
        data = pickle.dumps(backend)
        assert _leaks(str(data)) == [], type(backend).__name__
        assert _leaks(repr(backend)) == []
        # The copy (a spawned worker inherits the environment) has its credentials again.
        clone = pickle.loads(data)
        assert any(SECRET in str(v) for v in vars(clone).values()), type(backend).__name__


def test_tls_certificates_are_verified_by_default(make_dataset: MakeDataset, tmp_path: Path) -> None:
    root = make_dataset()
    cert, key = self_signed(tmp_path)
    with (
        HTTPSStaticServer(root.parent, cert, key) as server,
        pytest.raises(StorageError, match=r"(?i)certif"),
    ):
        StreamingDataset(
            remote=f"{server.url}/{root.name}", local=str(tmp_path / "c"), batch_size=1, download_retry=0
        )


def test_tls_certificates_are_verified_for_an_s3_endpoint(
    aws_env: None, make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    with HTTPSStaticServer(make_dataset().parent, cert, key) as server:
        monkeypatch.setenv("S3_ENDPOINT_URL", server.url)
        with pytest.raises(StorageError, match=r"TLS certificate failed verification"):
            StreamingDataset(
                remote="s3://bucket/ds", local=str(tmp_path / "c"), batch_size=1, download_retry=0
            )
