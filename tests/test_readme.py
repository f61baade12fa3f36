"""Every code block of the README that a reader would run is run here, in order (see readme_blocks)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from readme_blocks import Block, blocks, run_block

from astreaming.testing.servers import FakeGCSServer, MotoS3Server

sys.path.insert(0, str(Path(__file__).parent / "storage"))
from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, azurite_unavailable  # tests/storage: not a package

#: Endpoints the README's credential examples use, as a reader would run them locally; the tests point
#: them at the fake servers (moto, fake-gcs-server, Azurite) on their own ports.
PLACEHOLDERS = {
    "s3": "https://minio.example.com:9000",
    "gcs": "http://localhost:4443",
    "azure": "http://127.0.0.1:10000/devstoreaccount1",
}

BLOCKS = [b for b in blocks() if b.runs and b.mark != "spark"]


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3Server]:
    """A moto server of the README's own (its buckets are named in the README)."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reader's working directory, shared by the blocks in README order."""
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite | None]:
    """Azurite, started for the first Azure block (None where node/npm cannot run it: those skip)."""
    server = Azurite().start() if azurite_unavailable() is None else None
    try:
        yield server
    finally:
        if server is not None:
            server.stop()


def _env(workdir: Path) -> dict[str, str]:
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the astreaming script
    for key in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(key, None)
    for key in list(env):
        if key.startswith(("AZURE_", "GCS_", "GOOGLE_")) or key == "STORAGE_EMULATOR_HOST":
            env.pop(key)
    return env


def test_the_readme_has_the_blocks_this_suite_runs() -> None:
    python = [b for b in blocks() if b.lang == "python"]
    assert len(python) >= 5 and all(b.runs for b in python)
    assert [b for b in python if b.mark == "spark"], "the Spark block is run by tests/spark"
    assert any(b.lang == "bash" and b.mark == "s3" for b in BLOCKS)  # the quick start's commands
    # A worked credentials example per backend, each naming the endpoint the tests redirect.
    for mark, placeholder in PLACEHOLDERS.items():
        assert any(b.mark == mark and placeholder in b.code for b in BLOCKS), mark


def _azure_containers(server: Azurite, names: list[str]) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(server.connection_string) as sdk:
        for name in names:
            if not sdk.get_container_client(name).exists():
                sdk.create_container(name)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}-{b.lang}" for b in BLOCKS])
def test_readme_block(
    block: Block,
    workdir: Path,
    s3: MotoS3Server,
    gcs_server: FakeGCSServer,
    azurite: Azurite | None,
) -> None:
    env = _env(workdir)
    endpoint = None
    if block.mark == "s3":
        for bucket in block.buckets:
            s3.create_bucket(bucket)
        env.update(MotoS3Server.credentials)
        env.update(
            {
                "S3_ENDPOINT_URL": s3.url,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        endpoint = s3.url
    elif block.mark == "gcs":
        for bucket in block.buckets:
            gcs_server.create_bucket(bucket)
        endpoint = gcs_server.url
    elif block.mark == "azure":
        if azurite is None:
            pytest.skip(str(azurite_unavailable()))
        _azure_containers(azurite, block.buckets)
        env.update(
            {
                "AZURE_ACCOUNT_NAME": ACCOUNT,
                "AZURE_ACCOUNT_ACCESS_KEY": ACCOUNT_KEY,
                "AZURE_STORAGE_ENDPOINT": azurite.endpoint,
            }
        )
        endpoint = azurite.endpoint
    if block.mark in PLACEHOLDERS and endpoint is not None:
        block = dataclasses.replace(block, code=block.code.replace(PLACEHOLDERS[block.mark], endpoint))
    proc = run_block(block, workdir, env)
    assert proc.returncode == 0, f"README line {block.line} failed:\n{proc.stdout}\n{proc.stderr}"
