"""gs:// specifics against fake-gcs-server: pooling under 200 concurrent reads, resumable uploads, env."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from storage_cases import GCS_BUCKET, gcs_put

from astreaming.errors import ObjectNotFound
from astreaming.storage.gcs import GCSBackend
from astreaming.storage.registry import backend_for
from astreaming.testing.servers import FakeGCSServer

pytestmark = pytest.mark.timeout(120)


def data_of(n: int) -> bytes:
    return b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(-(-n // 32)))[:n]


async def test_200_concurrent_range_reads(gcs_server: FakeGCSServer) -> None:
    data = data_of(2 << 20)
    gcs_put(gcs_server, GCS_BUCKET, "concurrent/blob.bin", data)
    url = f"gs://{GCS_BUCKET}/concurrent/blob.bin"
    ranges = [(i * 10_000, i * 10_000 + 4_096 + i) for i in range(200)]
    async with GCSBackend(emulator_host=gcs_server.url, timeout=60, max_connections=64) as b:
        got = await asyncio.gather(*(b.read_range(url, s, e) for s, e in ranges))
        assert got == [data[s:e] for s, e in ranges]
        assert b.stats.requests == 200 and b.stats.errors == 0
        assert b._client_http is not None
        connector = b._client_http.client.connector
        assert connector is not None and connector.limit == 64  # bounded pool, shared by all reads


async def test_large_upload_is_resumable_and_chunked(
    gcs_server: FakeGCSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(data_of((1 << 20) + 1000))
    puts: list[str] = []
    async with GCSBackend(
        emulator_host=gcs_server.url, resumable_threshold=512 << 10, upload_chunk_size=300 << 10
    ) as b:
        session = (await b._storage()).session.session
        real_put = session.put

        def spy(url: str, **kw: object) -> object:
            puts.append(str(kw["headers"]["Content-Range"]))  # type: ignore[index]
            return real_put(url, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(session, "put", spy)
        url = f"gs://{GCS_BUCKET}/up/big.bin"
        await b.upload(src, url)
        assert await b.read_bytes(url) == src.read_bytes()
    # upload_chunk_size is rounded up to 256 KiB multiples: 512 KiB chunks, the last carries the total.
    assert puts == ["bytes 0-524287/*", "bytes 524288-1048575/*", f"bytes 1048576-1049575/{(1 << 20) + 1000}"]


async def test_emulator_from_environment(gcs_server: FakeGCSServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gcs_put(gcs_server, GCS_BUCKET, "env/x", b"via env")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url.removeprefix("http://"))
    async with backend_for(f"gs://{GCS_BUCKET}/env/x") as b:
        assert isinstance(b, GCSBackend) and b.api_root == gcs_server.url
        assert await b.read_bytes(f"gs://{GCS_BUCKET}/env/x") == b"via env"


async def test_missing_bucket_is_not_found(gcs_server: FakeGCSServer) -> None:
    async with GCSBackend(emulator_host=gcs_server.url) as b:
        with pytest.raises(ObjectNotFound, match="gs://no-such-bucket/k"):
            await b.stat("gs://no-such-bucket/k")


def test_upload_session_is_rebased_onto_the_proxy() -> None:
    b = GCSBackend(emulator_host="http://127.0.0.1:9999")
    loc = "http://127.0.0.1:4443/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=abc"
    assert (
        b._rebase(loc) == "http://127.0.0.1:9999/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=abc"
    )
