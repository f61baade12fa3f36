"""AzureBackend against Azurite: every operation, atomic downloads, pagination, block uploads, 404, 403."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, azurite_fixture

from astreaming.errors import ConfigError, ObjectNotFound, PermissionDenied
from astreaming.storage.azure import AzureBackend, _parse
from astreaming.storage.registry import backend_for
from astreaming.testing.faultproxy import FaultProxy

azure_blob = pytest.importorskip("azure.storage.blob")
from azure.storage.blob import BlobSasPermissions, generate_blob_sas  # noqa: E402
from azure.storage.blob.aio import BlobServiceClient  # noqa: E402

HOST = f"{ACCOUNT}.blob.core.windows.net"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from azurite_fixture()


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The backend reads these; a developer's own settings must not leak into the tests.
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)


@dataclass
class Container:
    name: str
    base: str  # azure://devstoreaccount1.blob.core.windows.net/<name>
    sdk: BlobServiceClient  # a plain SDK client, to prepare and check data independently

    def url(self, blob: str) -> str:
        return f"{self.base}/{blob}"

    async def put(self, blob: str, data: bytes) -> None:
        client = self.sdk.get_blob_client(self.name, blob)
        if len(data) <= 1 << 20:
            await client.upload_blob(data, overwrite=True)
        else:  # one staged block: the SDK streams it (a single put would send > 1 MiB of raw bytes)
            await client.stage_block("YmxvY2s=", io.BytesIO(data), length=len(data))
            await client.commit_block_list(["YmxvY2s="])

    async def get(self, blob: str) -> bytes:
        downloader = await self.sdk.get_blob_client(self.name, blob).download_blob()
        return bytes(await downloader.readall())


@pytest.fixture
async def container(azurite: Azurite) -> AsyncIterator[Container]:
    name = f"t{uuid.uuid4().hex[:20]}"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as sdk:
        await sdk.create_container(name)
        yield Container(name, f"azure://{HOST}/{name}", sdk)


@pytest.fixture
async def backend(azurite: Azurite) -> AsyncIterator[AzureBackend]:
    async with AzureBackend(connection_string=azurite.connection_string, timeout=30) as b:
        yield b


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


async def test_read_stat_exists_ranges(backend: AzureBackend, container: Container) -> None:
    data = _data(300_000)
    await container.put("dir/obj.bin", data)
    url = container.url("dir/obj.bin")
    assert await backend.read_bytes(url) == data
    info = await backend.stat(url)
    assert (info.url, info.size) == (url, len(data))
    assert info.etag
    assert await backend.exists(url)
    assert not await backend.exists(container.url("dir/nope.bin"))
    assert await backend.read_range(url, 0, 10) == data[:10]
    assert await backend.read_range(url, 123_456, 200_001) == data[123_456:200_001]
    assert await backend.read_range(url, 299_990, 400_000) == data[299_990:]  # clamped at the end
    assert await backend.read_range(url, 300_000, 300_010) == b""  # starts at the end
    assert await backend.read_range(url, 5, 5) == b""
    with pytest.raises(ConfigError, match="range"):
        await backend.read_range(url, 10, 5)
    assert backend.stats.bytes_downloaded == len(data) + 10 + 76_545 + 10


async def test_download_is_atomic_and_streams(
    backend: AzureBackend, container: Container, tmp_path: Path
) -> None:
    data = _data(9 * 1024 * 1024 + 17, seed=1)  # more than the SDK's 4 MiB chunks: several GETs
    await container.put("shard.00000.mds", data)
    dest = tmp_path / "cache" / "shard.00000.mds"
    n = await backend.download(container.url("shard.00000.mds"), dest)
    assert n == len(data)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["shard.00000.mds"]  # no .part left

    # A failed download leaves the previous copy untouched and no .part file.
    with pytest.raises(ObjectNotFound) as info:
        await backend.download(container.url("missing.mds"), dest)
    assert container.url("missing.mds") in str(info.value)
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["shard.00000.mds"]


async def test_list_paginates_in_key_order(azurite: Azurite, container: Container) -> None:
    names = [f"data/shard.{i:05d}.mds" for i in range(11)] + ["data/index.json", "other/x", "data2/y"]
    for i, name in enumerate(names):
        await container.put(name, _data(i + 1, seed=i))
    async with AzureBackend(connection_string=azurite.connection_string, page_size=3) as b:
        found = [info async for info in b.list(container.url("data/"))]
        assert [i.url for i in found] == sorted(container.url(n) for n in names if n.startswith("data/"))
        assert {i.url: i.size for i in found} == {
            container.url(n): i + 1 for i, n in enumerate(names) if n.startswith("data/")
        }
        assert all(i.etag for i in found)
        # A plain string prefix, as in object stores.
        assert [i.url async for i in b.list(container.url("data"))][-1] == container.url("data2/y")
        assert len([i async for i in b.list(container.base)]) == len(names)
        assert [i async for i in b.list(container.url("nothing/"))] == []
        assert [i async for i in b.list(f"azure://{HOST}/no-such-container/x")] == []
        # Pages of 3: 11 + 1 objects under "data/" take 4 requests, the 14 in the container 5.
        before = b.stats.requests
        assert len([i async for i in b.list(container.url("data/"))]) == 12
        assert b.stats.requests - before == 4
        before = b.stats.requests
        assert len([i async for i in b.list(container.base)]) == 14
        assert b.stats.requests - before == 5


async def test_upload_small_and_block_upload(azurite: Azurite, container: Container, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    big = tmp_path / "big.bin"
    big_data = _data(1_300_000, seed=5)
    big.write_bytes(big_data)
    options = {"block_size": 256 * 1024, "single_put_size": 256 * 1024, "upload_concurrency": 3}
    async with AzureBackend(connection_string=azurite.connection_string, **options) as b:
        await b.upload(small, container.url("up/small.bin"))
        await b.upload(big, container.url("up/big.bin"))
        assert b.stats.bytes_uploaded == 4 + len(big_data)
        # Replacing an existing blob.
        big.write_bytes(big_data[::-1])
        await b.upload(big, container.url("up/big.bin"))
        with pytest.raises(ObjectNotFound, match=r"nothing\.bin"):
            await b.upload(tmp_path / "nothing.bin", container.url("up/x"))
    assert await container.get("up/small.bin") == b"tiny"
    assert await container.get("up/big.bin") == big_data[::-1]
    blocks = await container.sdk.get_blob_client(container.name, "up/big.bin").get_block_list("committed")
    committed = blocks[0]
    assert len(committed) == 5  # ceil(1.3 MB / 256 KiB)
    assert sum(block.size for block in committed) == len(big_data)
    # Both kinds of upload leave the blob's md5, which readers pin it to (astreaming.storage.versions):
    # the service computes it for a single put, the backend sends it with the block list.
    for blob, data in (("up/small.bin", b"tiny"), ("up/big.bin", big_data[::-1])):
        props = await container.sdk.get_blob_client(container.name, blob).get_blob_properties()
        assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()


async def test_default_upload_settings_stream_blocks(
    backend: AzureBackend, container: Container, tmp_path: Path
) -> None:
    # Above 1 MiB the default settings stage blocks from file objects (no raw-bytes warning, which
    # the test run turns into an error).
    src = tmp_path / "three.bin"
    data = _data(3 * 1024 * 1024 + 5, seed=9)
    src.write_bytes(data)
    await backend.upload(src, container.url("three.bin"))
    assert await container.get("three.bin") == data


async def test_delete(backend: AzureBackend, container: Container) -> None:
    await container.put("gone.bin", b"x")
    url = container.url("gone.bin")
    await backend.delete(url)
    assert not await backend.exists(url)
    with pytest.raises(ObjectNotFound):
        await backend.delete(url)


async def test_not_found_everywhere(backend: AzureBackend, container: Container, tmp_path: Path) -> None:
    url = container.url("absent.bin")
    for call in (
        backend.read_bytes(url),
        backend.stat(url),
        backend.read_range(url, 0, 10),
        backend.download(url, tmp_path / "absent.bin"),
    ):
        with pytest.raises(ObjectNotFound) as info:
            await call
        assert info.value.url == url
    assert not (tmp_path / "absent.bin").exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ObjectNotFound):
        await backend.read_bytes(f"azure://{HOST}/no-such-container/a")


async def test_wrong_key_is_permission_denied(azurite: Azurite, container: Container) -> None:
    await container.put("secret.bin", b"s")
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    async with AzureBackend(endpoint_url=azurite.endpoint, account_key=wrong) as b:
        with pytest.raises(PermissionDenied) as info:
            await b.read_bytes(container.url("secret.bin"))
        assert wrong not in str(info.value)
        with pytest.raises(PermissionDenied):
            [i async for i in b.list(container.base)]


async def test_mosaic_env_vars_and_registry(
    azurite: Azurite, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mosaicml-streaming's variables plus an endpoint override: the account name is the URL's first label.
    monkeypatch.setenv("AZURE_ACCOUNT_ACCESS_KEY", ACCOUNT_KEY)
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", azurite.endpoint)
    await container.put("env.bin", b"from env")
    backend = backend_for(container.url("env.bin"), timeout=20)
    assert isinstance(backend, AzureBackend)
    async with backend as b:
        assert await b.read_bytes(container.url("env.bin")) == b"from env"

    # A connection string alone (Azurite's usual setup).
    monkeypatch.delenv("AZURE_ACCOUNT_ACCESS_KEY")
    monkeypatch.delenv("AZURE_STORAGE_ENDPOINT")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    async with backend_for(container.url("env.bin")) as b:
        assert await b.read_bytes(container.url("env.bin")) == b"from env"

    # The connection string's key with the endpoint overridden: requests really go to the override.
    async with FaultProxy(azurite.endpoint.rsplit("/", 1)[0]) as proxy:
        monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", f"{proxy.url}/{ACCOUNT}")
        async with backend_for(container.url("env.bin")) as b:
            assert await b.read_bytes(container.url("env.bin")) == b"from env"
        assert proxy.stats.forwarded == 1


async def test_sas_token_in_url_works_and_is_redacted(azurite: Azurite, container: Container) -> None:
    await container.put("sas.bin", b"via sas")
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)

    def sas(blob: str) -> str:
        return generate_blob_sas(
            ACCOUNT,
            container.name,
            blob,
            account_key=ACCOUNT_KEY,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )

    token = sas("sas.bin")
    signature = dict(p.split("=", 1) for p in token.split("&"))["sig"]
    async with AzureBackend(endpoint_url=azurite.endpoint, anonymous=True) as b:
        assert await b.read_bytes(container.url("sas.bin") + "?" + token) == b"via sas"
        missing = container.url("nope.bin") + "?" + sas("nope.bin")
        with pytest.raises(ObjectNotFound) as info:
            await b.read_bytes(missing)
        assert "sig=REDACTED" in str(info.value)
        assert signature not in str(info.value)
        assert signature not in str(info.value.url)
        # Without a credential the private container refuses.
        with pytest.raises((PermissionDenied, ObjectNotFound)):
            await b.read_bytes(container.url("sas.bin"))


async def test_pickles_without_clients(backend: AzureBackend, container: Container) -> None:
    await container.put("p.bin", b"pickle")
    assert await backend.read_bytes(container.url("p.bin")) == b"pickle"
    clone = pickle.loads(pickle.dumps(backend))
    async with clone:
        assert await clone.read_bytes(container.url("p.bin")) == b"pickle"


def test_bad_urls_and_options() -> None:
    b = AzureBackend(anonymous=True)
    for url, match in (
        ("azure://acct.blob.core.windows.net/container", "blob name"),
        ("azure://acct.blob.core.windows.net/", "container"),
        ("s3://bucket/key", "not an azure"),
    ):
        with pytest.raises(ConfigError, match=match):
            b._blob(_parse(url))
    with pytest.raises(ConfigError, match="block_size"):
        AzureBackend(block_size=0)
    with pytest.raises(ConfigError, match="upload_concurrency"):
        AzureBackend(upload_concurrency=0)


def test_error_mapping_table() -> None:
    from azure.core import exceptions as az

    from astreaming.errors import StorageError, TransientStorageError
    from astreaming.storage.azure import _map

    url = f"azure://{HOST}/c/b?sv=1&sig=SECRETSIG"

    def err(cls: type[az.HttpResponseError], status: int | None, code: str = "") -> az.HttpResponseError:
        e = cls(message=f"signed request with SECRETSIG, code {code}")
        e.status_code = status
        e.error_code = code
        return e

    cases = [
        (err(az.ResourceNotFoundError, 404, "BlobNotFound"), ObjectNotFound),
        (err(az.ClientAuthenticationError, 403, "AuthenticationFailed"), PermissionDenied),
        (err(az.HttpResponseError, 503, "ServerBusy"), TransientStorageError),
        (err(az.HttpResponseError, 429), TransientStorageError),
        (err(az.ResourceModifiedError, 412, "ConditionNotMet"), TransientStorageError),
        (err(az.HttpResponseError, None), TransientStorageError),
        (err(az.IncompleteReadError, 200), TransientStorageError),
        (az.ServiceResponseError("read timed out"), TransientStorageError),
        (az.ServiceRequestError("connection refused"), TransientStorageError),
    ]
    for exc, expected in cases:
        mapped = _map(exc, url, "read")
        assert type(mapped) is expected, (exc, mapped)
        assert "SECRETSIG" not in str(mapped)
        assert "sig=REDACTED" in str(mapped)
    other = _map(err(az.HttpResponseError, 400, "InvalidQueryParameterValue"), url, "read")
    assert type(other) is StorageError  # a 4xx other than 401/403/404/408/429 is not retried
    assert _map(ValueError("not ours"), url, "read") is None
