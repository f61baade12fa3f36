"""Fixtures of the writer/merge tests: session-scoped fake servers and one fresh remote per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import output_fakes
import pytest
from output_remotes import GCS_BUCKET, S3_BUCKET, Remote, make_remote

from astreaming.testing.servers import FakeGCSServer, MotoS3Server


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGCSServer]:
    with FakeGCSServer() as server:
        server.create_bucket(GCS_BUCKET)
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    with MotoS3Server() as server:
        server.create_bucket(S3_BUCKET)
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake AWS credentials, isolated from any real ~/.aws configuration."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(params=["local", "file", "gs", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Every writable destination in turn."""
    return make_remote(request.param, request, tmp_path)


@pytest.fixture(params=["scripted", "gs", "s3"])
def bare(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Destinations whose bare URL is remote (staged in a temporary directory): scripted://, gs, s3."""
    if request.param == "scripted":
        output_fakes.install()
    return make_remote(request.param, request, tmp_path)


@pytest.fixture(params=["gs", "s3"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """The emulated clouds only."""
    return make_remote(request.param, request, tmp_path)


@pytest.fixture
def script() -> output_fakes.Script:
    """The scripted backend (``scripted:///path`` URLs), reset for this test."""
    return output_fakes.install()
