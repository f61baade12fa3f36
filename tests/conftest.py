"""Fixtures shared by every suite: one fake-gcs-server and one moto server per test session.

Suites that need a bucket create it through their own fixture of the same name (pytest lets a
directory's fixture build on the parent's), so the servers start once for the whole run.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from astreaming.testing.servers import FakeGCSServer, MotoS3Server


def pytest_configure(config: pytest.Config) -> None:
    """A run started in the background of a shell without job control (``cmd &``, ``nohup``) inherits
    an ignored SIGINT, and an ignored signal stays ignored across ``exec``: the Ctrl-C tests' children
    would never see theirs. Handling it here makes every child start with the default disposition
    (a handled signal is reset at ``exec``), so Python raises KeyboardInterrupt in them as in a terminal."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGCSServer]:
    """fake-gcs-server (the real Go binary) on 127.0.0.1."""
    with FakeGCSServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    """moto's S3 in server mode on 127.0.0.1."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake AWS credentials for moto, isolated from any real ~/.aws configuration and endpoints."""
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
