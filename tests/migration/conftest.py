"""Fixtures of the migration tests: datasets written through the public writer, buckets in the fakes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from astreaming import MDSWriter
from astreaming.testing.servers import FakeGCSServer, MotoS3Server

BUCKET = "astreaming-migration"

MakeDataset = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """Write an MDS dataset of ``n`` samples whose ``id`` column holds each sample's global index."""
    counter = iter(range(1_000_000))

    def make(
        n: int = 60, *, columns: dict[str, str] | None = None, size_limit: int = 600, **kw: object
    ) -> Path:
        out = tmp_path / f"remote{next(counter)}"
        cols = columns or {"id": "int", "pad": "str"}
        with MDSWriter(out=str(out), columns=cols, size_limit=size_limit, **kw) as writer:  # type: ignore[arg-type]
            for i in range(n):
                writer.write({name: (i if enc != "str" else "x" * (i % 7)) for name, enc in cols.items()})
        return out

    return make


@pytest.fixture(scope="session")
def gcs_bucket(gcs_server: FakeGCSServer) -> FakeGCSServer:
    """The session's fake-gcs-server with this suite's bucket."""
    gcs_server.create_bucket(BUCKET)
    return gcs_server


@pytest.fixture(scope="session")
def s3_bucket(s3_server: MotoS3Server) -> MotoS3Server:
    """The session's moto server with this suite's bucket."""
    s3_server.create_bucket(BUCKET)
    return s3_server


@pytest.fixture
def gs_env(gcs_bucket: FakeGCSServer, monkeypatch: pytest.MonkeyPatch) -> FakeGCSServer:
    """Point gs:// at fake-gcs-server the way users configure an emulator (environment)."""
    monkeypatch.delenv("GCS_KEY", raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_bucket.url)
    return gcs_bucket


@pytest.fixture
def s3_env(s3_bucket: MotoS3Server, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> MotoS3Server:
    """Point s3:// at moto through ``S3_ENDPOINT_URL``, with fake credentials."""
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_bucket.url)
    return s3_bucket
