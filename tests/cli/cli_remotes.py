"""Remote outputs for the CLI tests: environment for a CLI process and reading a dataset back."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from astreaming import StreamingDataset
from astreaming.testing.servers import FakeGCSServer, MotoS3Server

#: put(name, bytes) and delete(name) under a remote dataset directory.
Put = Callable[[str, bytes], None]
Delete = Callable[[str], None]
#: (directory URL, environment of a CLI process, put, delete)
Remote = tuple[str, dict[str, str], Put, Delete]

GCS_BUCKET = "astreaming-cli-gcs"
S3_BUCKET = "astreaming-cli-s3"


def gcs_env(server: FakeGCSServer) -> dict[str, str]:
    """What a CLI process needs to reach fake-gcs-server (as users configure the emulator)."""
    return {"STORAGE_EMULATOR_HOST": server.url}


def s3_env(server: MotoS3Server, tmp_path: Path) -> dict[str, str]:
    """What a CLI process needs to reach moto, isolated from any real AWS configuration."""
    return {
        **MotoS3Server.credentials,
        "S3_ENDPOINT_URL": server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def gcs_url(server: FakeGCSServer) -> str:
    """A fresh directory URL in the CLI tests' bucket."""
    server.create_bucket(GCS_BUCKET)
    return f"gs://{GCS_BUCKET}/ds-{uuid.uuid4().hex[:8]}"


def read_remote(url: str, cache: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every sample of the remote dataset ``url``, through astreaming's StreamingDataset (in index order)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with StreamingDataset(remote=url, local=str(cache), batch_size=1) as ds:
        return [ds[i] for i in range(ds.num_samples)]


# -- Azurite (the npm emulator; tests/storage/azurite.py starts it) --------------------------------------

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))
from azurite import ACCOUNT, Azurite, azurite_fixture  # noqa: E402, F401  (tests/storage: not a package)

AZURE_HOST = f"{ACCOUNT}.blob.core.windows.net"


def azure_env(server: Azurite) -> dict[str, str]:
    """What a CLI process needs to reach Azurite with the development account's key."""
    return {"AZURE_STORAGE_CONNECTION_STRING": server.connection_string}


def azure_container(server: Azurite) -> str:
    """A fresh container; returns its URL (``azure://<account host>/<container>``)."""
    from azure.storage.blob import BlobServiceClient

    name = f"c{uuid.uuid4().hex[:16]}"
    with BlobServiceClient.from_connection_string(server.connection_string) as sdk:
        sdk.create_container(name)
    return f"azure://{AZURE_HOST}/{name}"


def azure_put(server: Azurite, url: str, data: bytes) -> None:
    """Store ``data`` at ``azure://host/container/blob`` (overwriting)."""
    from azure.storage.blob import BlobServiceClient

    container, blob = url.removeprefix(f"azure://{AZURE_HOST}/").split("/", 1)
    with BlobServiceClient.from_connection_string(server.connection_string) as sdk:
        sdk.get_blob_client(container, blob).upload_blob(data, overwrite=True)


def azure_delete(server: Azurite, url: str) -> None:
    """Delete the blob at ``azure://host/container/blob``."""
    from azure.storage.blob import BlobServiceClient

    container, blob = url.removeprefix(f"azure://{AZURE_HOST}/").split("/", 1)
    with BlobServiceClient.from_connection_string(server.connection_string) as sdk:
        sdk.get_blob_client(container, blob).delete_blob()
