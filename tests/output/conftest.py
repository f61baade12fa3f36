"""Fixtures of the writer/merge tests: session-scoped fake servers and one fresh remote per test."""

from __future__ import annotations

from pathlib import Path

import output_fakes
import pytest
from output_remotes import GCS_BUCKET, S3_BUCKET, Remote, make_remote

from astreaming.testing.servers import FakeGCSServer, MotoS3Server


@pytest.fixture(scope="session")
def gcs_server(gcs_server: FakeGCSServer) -> FakeGCSServer:
    """The session's fake-gcs-server, with this suite's bucket."""
    gcs_server.create_bucket(GCS_BUCKET)
    return gcs_server


@pytest.fixture(scope="session")
def s3_server(s3_server: MotoS3Server) -> MotoS3Server:
    """The session's moto server, with this suite's bucket."""
    s3_server.create_bucket(S3_BUCKET)
    return s3_server


@pytest.fixture(params=["local", "file", "gs", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Every writable destination in turn."""
    return make_remote(request.param, request, tmp_path)


@pytest.fixture(params=["scripted", "gs", "s3"])
def bare(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Destinations whose bare URL is remote (staged in a temporary directory): scripted:// (served by an
    injected backend: pass ``backend=bare.backend()``), gs, s3."""
    return make_remote(request.param, request, tmp_path)


@pytest.fixture(params=["gs", "s3"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """The emulated clouds only."""
    return make_remote(request.param, request, tmp_path)


@pytest.fixture
def script() -> output_fakes.Script:
    """A fresh script; ``script.backend()`` makes a backend following it, to pass as ``backend=``."""
    return output_fakes.Script()
