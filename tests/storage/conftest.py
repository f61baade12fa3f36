"""Session-scoped fake servers and per-test storage cases for the storage tests.

Servers (all on 127.0.0.1, free ports, started here and stopped at the end of the session):
fake-gcs-server (the real Go binary), moto's threaded S3 server, and an aiohttp static server.
Every test gets its own prefix (``<bucket>/<uuid>/``), so tests never see each other's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storage_cases import GCS_BUCKET, S3_BUCKET, StorageCase, gcs_put

from astreaming.storage.registry import backend_for
from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer, free_port

CASES = ["local", "file", "gs", "s3", "http"]


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


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http-root")


@pytest.fixture(scope="session")
def http_server(http_root: Path) -> Iterator[StaticHTTPServer]:
    with StaticHTTPServer(http_root) as server:
        yield server


def _local_put(root: Path) -> Callable[[str, bytes], None]:
    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return put


def make_case(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> StorageCase:
    """Build the StorageCase ``name`` (starting its server on first use)."""
    prefix = uuid.uuid4().hex[:12]
    if name in ("local", "file"):
        root = tmp_path / "remote"
        root.mkdir()
        base = f"{root}/" if name == "local" else f"file://{root}/"
        return StorageCase(name, base, lambda: backend_for(base, timeout=30), _local_put(root))
    if name == "gs":
        gcs: FakeGCSServer = request.getfixturevalue("gcs_server")
        return StorageCase(
            name,
            f"gs://{GCS_BUCKET}/{prefix}/",
            lambda: backend_for(
                "gs://",
                timeout=30,
                emulator_host=gcs.url,
                page_size=3,
                resumable_threshold=1 << 20,
                upload_chunk_size=256 << 10,
            ),
            lambda key, data: gcs_put(gcs, GCS_BUCKET, f"{prefix}/{key}", data),
            page_size=3,
        )
    if name == "s3":
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        request.getfixturevalue("aws_env")
        client = s3.client()
        request.addfinalizer(client.close)
        return StorageCase(
            name,
            f"s3://{S3_BUCKET}/{prefix}/",
            lambda: backend_for(
                "s3://",
                timeout=30,
                endpoint_url=s3.url,
                page_size=3,
                multipart_threshold=5 << 20,
                part_size=5 << 20,
            ),
            lambda key, data: client.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/{key}", Body=data),
            page_size=3,
            large_upload=11 << 20,
        )
    if name == "http":
        server: StaticHTTPServer = request.getfixturevalue("http_server")
        root = request.getfixturevalue("http_root") / prefix
        root.mkdir()
        return StorageCase(
            name,
            f"{server.url}/{prefix}/",
            lambda: backend_for(server.url, timeout=30),
            _local_put(root),
            writable=False,
            listable=False,
        )
    raise ValueError(name)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> StorageCase:
    """Every backend in turn (the conformance suite is parametrised by this fixture)."""
    return make_case(request.param, request, tmp_path)


@pytest.fixture(params=["gs", "s3", "http"])
def remote_case(request: pytest.FixtureRequest, tmp_path: Path) -> StorageCase:
    """The network backends (their downloads stream through PartFile)."""
    return make_case(request.param, request, tmp_path)


@pytest.fixture(params=["local", "file", "gs", "s3"])
def writable_case(request: pytest.FixtureRequest, tmp_path: Path) -> StorageCase:
    """The backends that support upload and delete."""
    return make_case(request.param, request, tmp_path)


@pytest.fixture
def no_google_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Google credentials anywhere, no emulator variable, and a metadata server where nothing listens."""
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "GCE_METADATA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{free_port()}")
