"""Fixtures of the CLI tests: run ``astreaming`` as a separate process, as a user would."""

from __future__ import annotations

import os
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from cli_helpers import CLI, RunCLI, cli_env
from cli_remotes import (
    GCS_BUCKET,
    S3_BUCKET,
    Azurite,
    Remote,
    azure_container,
    azure_delete,
    azure_env,
    azure_put,
    azurite_fixture,
    gcs_env,
    gcs_url,
    s3_env,
)

from astreaming.testing.servers import FakeGCSServer, MotoS3Server


@pytest.fixture
def cli_tmp(tmp_path: Path) -> Path:
    """The TMPDIR of the CLI processes of one test."""
    path = tmp_path / "cli-tmp"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(cli_tmp: Path) -> RunCLI:
    """Run ``astreaming ARGS...``; returns the finished process (stdout and stderr as text).

    ``env`` adds environment variables (endpoints, credentials) to the process's environment.
    """

    def run(
        *args: str | os.PathLike[str], timeout: float = 120.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [*CLI, *(os.fspath(a) for a in args)]
        full_env = {**cli_env(cli_tmp), **(env or {})}
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
        )

    return run


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite for the CLI tests (skips, printing why, only where node/npm cannot run it)."""
    yield from azurite_fixture()


def _gcs_delete(server: FakeGCSServer, key: str) -> None:
    name = urllib.parse.quote(key, safe="")
    req = urllib.request.Request(f"{server.url}/storage/v1/b/{GCS_BUCKET}/o/{name}", method="DELETE")
    urllib.request.urlopen(req, timeout=30).close()  # a DELETE answers 204: nothing to read


@pytest.fixture(params=["gs", "s3", "azure"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """(dataset URL, CLI environment, put(name, bytes), delete(name)) on one of the fake servers."""
    if request.param == "gs":
        gcs: FakeGCSServer = request.getfixturevalue("gcs_server")
        url = gcs_url(gcs)
        prefix = url.removeprefix(f"gs://{GCS_BUCKET}/")
        return (
            url,
            gcs_env(gcs),
            lambda name, data: gcs.put_object(GCS_BUCKET, f"{prefix}/{name}", data),
            lambda name: _gcs_delete(gcs, f"{prefix}/{name}"),
        )
    if request.param == "s3":
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        s3.create_bucket(S3_BUCKET)
        prefix = f"ds-{uuid.uuid4().hex[:8]}"
        return (
            f"s3://{S3_BUCKET}/{prefix}",
            s3_env(s3, tmp_path),
            lambda name, data: s3.put_object(S3_BUCKET, f"{prefix}/{name}", data),
            lambda name: s3.client().delete_object(Bucket=S3_BUCKET, Key=f"{prefix}/{name}"),
        )
    server: Azurite = request.getfixturevalue("azurite")
    url = f"{azure_container(server)}/ds"
    return (
        url,
        azure_env(server),
        lambda name, data: azure_put(server, f"{url}/{name}", data),
        lambda name: azure_delete(server, f"{url}/{name}"),
    )
