"""A StreamingDataset on an Azure container SAS URL: index and shards fetched with the token (issue 10)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, azurite_fixture

from astreaming import MDSWriter, StreamingDataset
from astreaming.errors import PermissionDenied, StorageError

pytest.importorskip("azure.storage.blob")
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

HOST = f"{ACCOUNT}.blob.core.windows.net"


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    yield from azurite_fixture()


@pytest.fixture
def sas_remote(azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A private container holding a 60-sample dataset under ``ds/``; returns (remote URL, signature)."""
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", azurite.endpoint)  # no credential: only the SAS
    out = tmp_path / "ds"
    with MDSWriter(out=str(out), columns={"id": "int"}, size_limit=200) as writer:
        for i in range(60):
            writer.write({"id": i})
    name = f"t{uuid.uuid4().hex[:20]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as sdk:
        container = sdk.create_container(name)
        for path in out.iterdir():
            container.upload_blob(f"ds/{path.name}", path.read_bytes())
    token = generate_container_sas(
        ACCOUNT,
        name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    signature = dict(p.split("=", 1) for p in token.split("&"))["sig"]
    return f"azure://{HOST}/{name}/ds?{token}", signature


def test_dataset_on_a_container_sas_url(sas_remote: tuple[str, str], tmp_path: Path) -> None:
    remote, _ = sas_remote
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=1)
    assert [s["id"] for s in ds] == list(range(60))


def test_without_the_token_access_is_refused(sas_remote: tuple[str, str], tmp_path: Path) -> None:
    remote, signature = sas_remote
    with pytest.raises((PermissionDenied, StorageError)) as info:
        StreamingDataset(remote=remote.partition("?")[0], local=str(tmp_path / "c"), batch_size=1)
    assert signature not in str(info.value)


def test_wrong_account_key_is_permission_denied(
    sas_remote: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, _ = sas_remote
    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    monkeypatch.setenv("AZURE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("AZURE_ACCOUNT_ACCESS_KEY", wrong)
    cache = tmp_path / "c"
    with pytest.raises(PermissionDenied, match="access denied") as info:
        StreamingDataset(remote=remote.partition("?")[0], local=str(cache), batch_size=1, download_retry=0)
    assert wrong not in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())
