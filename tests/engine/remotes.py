"""The golden iteration datasets in the session's fake-gcs-server or moto, for engine tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from astreaming.testing.servers import FakeGCSServer, MotoS3Server

GOLDEN_DATASETS = Path(__file__).parent.parent / "golden" / "iteration" / "datasets"
BUCKET = "astreaming-engine"


@dataclass
class Remote:
    """Where the golden datasets live, and the environment a process needs to read them."""

    name: str
    roots: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)


def upload_tree(put: object, source: Path, prefix: str) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file():
            put(BUCKET, f"{prefix}/{path.relative_to(source).as_posix()}", path.read_bytes())  # type: ignore[operator]


def s3_env(server: MotoS3Server) -> dict[str, str]:
    return {
        **MotoS3Server.credentials,
        "S3_ENDPOINT_URL": server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/astreaming-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/astreaming-aws-credentials",
    }


@pytest.fixture(scope="session")
def golden_remote(request: pytest.FixtureRequest) -> Remote:
    """The golden iteration datasets A, B, C in fake-gcs-server or moto (param: "gs" or "s3")."""
    kind = request.param
    prefix = uuid.uuid4().hex[:8]
    if kind == "gs":
        gcs: FakeGCSServer = request.getfixturevalue("gcs_server")
        gcs.create_bucket(BUCKET)
        for name in ("A", "B", "C"):
            upload_tree(gcs.put_object, GOLDEN_DATASETS / name, f"{prefix}/{name}")
        roots = {name: f"gs://{BUCKET}/{prefix}/{name}" for name in ("A", "B", "C")}
        return Remote("gs", roots, {"STORAGE_EMULATOR_HOST": gcs.url})
    s3: MotoS3Server = request.getfixturevalue("s3_server")
    s3.create_bucket(BUCKET)
    for name in ("A", "B", "C"):
        upload_tree(s3.put_object, GOLDEN_DATASETS / name, f"{prefix}/{name}")
    roots = {name: f"s3://{BUCKET}/{prefix}/{name}" for name in ("A", "B", "C")}
    return Remote("s3", roots, s3_env(s3))
