"""AzureBackend through the FaultProxy in front of Azurite: each fault maps to the right typed error, and
with the retry policy every fault is survived with identical bytes."""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, azurite_fixture

from astreaming.errors import ObjectNotFound, TransientStorageError
from astreaming.storage.azure import AzureBackend
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries
from astreaming.testing.faultproxy import FaultProxy
from astreaming.testing.faults import FaultPlan

pytest.importorskip("azure.storage.blob")
from azure.storage.blob.aio import BlobServiceClient

HOST = f"{ACCOUNT}.blob.core.windows.net"
SIZES = (0, 1, 70_000, 1_500_000)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from azurite_fixture()


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def blobs(
    azurite: Azurite, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A fresh container holding one blob per size; yields its azure:// base URL and the contents."""
    # Named after the test, not at random: the proxy's faults depend on the request path, so a fixed
    # name gives the same faults on every run.
    name = "f" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]
    contents = {f"blob-{n}.bin": random.Random(n).randbytes(n) for n in SIZES}
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as sdk:
        await sdk.create_container(name)
        for blob, data in contents.items():
            client = sdk.get_blob_client(name, blob)
            await client.stage_block("YmxvY2s=", io.BytesIO(data), length=len(data))
            await client.commit_block_list(["YmxvY2s="])
        yield f"azure://{HOST}/{name}", contents


@pytest.fixture
async def proxy(azurite: Azurite) -> AsyncIterator[FaultProxy]:
    upstream = azurite.endpoint.rsplit("/", 1)[0]
    async with FaultProxy(upstream) as p:
        yield p


def through(proxy: FaultProxy, timeout: float = 10.0) -> AzureBackend:
    # Shared-key signing covers the path and x-ms-* headers but not Host, so the proxy can rewrite it.
    return AzureBackend(endpoint_url=f"{proxy.url}/{ACCOUNT}", account_key=ACCOUNT_KEY, timeout=timeout)


def only_blob_gets(request: object) -> bool:
    return getattr(request, "method", "") == "GET" and "blob-" in getattr(request, "path", "")


async def test_error_status_is_transient_with_retry_after_and_not_retried_by_sdk(
    proxy: FaultProxy, blobs: tuple[str, dict[str, bytes]]
) -> None:
    base, _ = blobs
    proxy.plan = FaultPlan(error_rate=1.0, error_statuses=(503,), retry_after=3)
    async with through(proxy) as b:
        with pytest.raises(TransientStorageError) as info:
            await b.read_bytes(f"{base}/blob-1.bin")
    assert info.value.retry_after == 3
    assert "503" in str(info.value)
    assert proxy.stats.requests == 1  # the SDK's own retries are off: one call, one attempt


async def test_truncation_and_reset_fail_cleanly(
    proxy: FaultProxy, blobs: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    base, contents = blobs
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"previous copy")
    async with through(proxy) as b:
        for plan in (
            FaultPlan(truncate_rate=1.0, match=only_blob_gets),
            FaultPlan(reset_rate=1.0, match=only_blob_gets),
        ):
            proxy.plan = plan
            with pytest.raises(TransientStorageError, match=r"blob-1500000\.bin"):
                await b.download(f"{base}/blob-1500000.bin", dest)
            assert dest.read_bytes() == b"previous copy"
            assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]  # no .part left
        assert proxy.stats.truncations > 0
        assert proxy.stats.resets > 0
        proxy.plan = FaultPlan()
        assert await b.download(f"{base}/blob-1500000.bin", dest) == len(contents["blob-1500000.bin"])
    assert dest.read_bytes() == contents["blob-1500000.bin"]


@pytest.mark.timeout(120)
async def test_stall_hits_the_timeout(proxy: FaultProxy, blobs: tuple[str, dict[str, bytes]]) -> None:
    base, _ = blobs
    # An hour-long stall: only the client's 0.5 s timeout can end the read (a hang fails the test by its
    # timeout mark). The SDK re-requests an incomplete body a few times itself; each try stops so.
    proxy.plan = FaultPlan(stall_rate=1.0, stall_seconds=3600, match=only_blob_gets)
    async with through(proxy, timeout=0.5) as b:
        with pytest.raises(TransientStorageError):
            await b.read_bytes(f"{base}/blob-70000.bin")
    assert proxy.stats.stalls >= 1


async def test_every_fault_survived_with_retries(
    proxy: FaultProxy, blobs: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    base, contents = blobs
    proxy.plan = FaultPlan(
        error_rate=0.3,
        retry_after=0.01,
        # Body faults are few: the SDK re-reads a broken body itself, pausing 1 s each time.
        reset_rate=0.08,
        truncate_rate=0.08,
        stall_rate=0.1,
        stall_seconds=30,
        seed=4,
        match=only_blob_gets,
    )
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(attempts=12, timeout=5.0, sleep=no_sleep)
    stats = RetryStats()
    async with through(proxy, timeout=1.0) as b:
        for round_ in range(2):
            for name, data in contents.items():
                url = f"{base}/{name}"
                dest = tmp_path / f"{round_}-{name}"
                got = await with_retries(policy, partial(b.download, url, dest), url=url, stats=stats)
                assert got == len(data)
                assert dest.read_bytes() == data
                got_bytes = await with_retries(policy, partial(b.read_bytes, url), url=url, stats=stats)
                assert got_bytes == data
                if data:
                    part = await with_retries(policy, partial(b.read_range, url, 1, 40_000), url=url)
                    assert part == data[1:40_000]
    faults = proxy.stats
    # Deterministic (fixed seed and paths): every kind of fault happened and was survived.
    assert min(faults.errors, faults.resets, faults.truncations, faults.stalls) >= 1
    assert faults.faults >= 10
    assert stats.retries > 0
    assert not list(tmp_path.glob("*.part"))


async def test_not_found_is_not_retried(proxy: FaultProxy, blobs: tuple[str, dict[str, bytes]]) -> None:
    base, _ = blobs
    policy = RetryPolicy(attempts=5)
    async with through(proxy) as b:
        with pytest.raises(ObjectNotFound):
            await with_retries(policy, lambda: b.read_bytes(f"{base}/missing.bin"), url=base)
    assert proxy.stats.requests == 1
