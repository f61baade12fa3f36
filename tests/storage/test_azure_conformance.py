"""H4's storage conformance suite, run against AzureBackend on Azurite.

The suite's tests are imported below; the fixtures ``case``, ``remote_case`` and ``writable_case``
defined here (overriding the conftest's) make each of them run once, against Azure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from azurite import ACCOUNT, Azurite, azurite_fixture
from storage_cases import StorageCase
from test_storage_conformance import *  # noqa: F403 - the suite runs in this module

from astreaming.storage.azure import AzureBackend

pytest.importorskip("azure.storage.blob")
from azure.storage.blob import BlobServiceClient  # the sync client seeds objects

CONTAINER = "conformance"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from azurite_fixture()


@pytest.fixture(scope="session")
def azure_seed(azurite: Azurite) -> Iterator[BlobServiceClient]:
    """A plain sync SDK client that seeds objects out of band (never through AzureBackend)."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as client:
        client.create_container(CONTAINER)
        yield client


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)


def _azure_case(azurite: Azurite, seed: BlobServiceClient) -> StorageCase:
    prefix = uuid.uuid4().hex[:12]

    def put(key: str, data: bytes) -> None:
        seed.get_blob_client(CONTAINER, f"{prefix}/{key}").upload_blob(data, overwrite=True)

    return StorageCase(
        "azure",
        f"azure://{ACCOUNT}.blob.core.windows.net/{CONTAINER}/{prefix}/",
        lambda: AzureBackend(
            connection_string=azurite.connection_string,
            timeout=30,
            page_size=3,
            single_put_size=1 << 20,
            block_size=256 << 10,
        ),
        put,
        page_size=3,
    )


@pytest.fixture
def case(azurite: Azurite, azure_seed: BlobServiceClient) -> StorageCase:
    return _azure_case(azurite, azure_seed)


@pytest.fixture
def remote_case(azurite: Azurite, azure_seed: BlobServiceClient) -> StorageCase:
    return _azure_case(azurite, azure_seed)


@pytest.fixture
def writable_case(azurite: Azurite, azure_seed: BlobServiceClient) -> StorageCase:
    return _azure_case(azurite, azure_seed)
