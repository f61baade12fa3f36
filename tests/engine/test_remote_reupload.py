"""The same bytes uploaded again under a new version token pass; other bytes of the same size fail.

An HTTP server's ETag and an Azure blob's ETag change with every upload, even of the very same bytes (a
conversion rerun, a re-copy). A job whose cache evicted a shard downloads it again and finds a new token:
that must not end the job when the bytes are the ones it read before, and must when they are not, in a
whole download and in a download in parallel byte ranges alike. Azure blobs written in one request carry
a Content-MD5 (the service sets it), blobs committed from blocks none unless the uploader sent one; an
S3 object uploaded in parts has an ETag that is not the md5 of its bytes, and one put of the same bytes
another ETag.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from astreaming import ObjectChanged, StreamingDataLoader, StreamingDataset
from astreaming.storage import ranged
from astreaming.testing.servers import MotoS3Server

from .remotes import BUCKET, s3_env
from .test_remote_versions import SAMPLES, limited, rewrite, versions_seen, write

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))
from azurite import ACCOUNT, Azurite, azurite_fixture

AZURE_HOST = f"{ACCOUNT}.blob.core.windows.net"
#: 8 shards of ~128 KB in 32 KB parts, for the parallel-range downloads (version 2 in the same layout).
LARGE = {"per_shard": 32, "blob": 4000, "samples": 256, "uneven": False}
PART = 32 << 10


@dataclass
class Remote:
    """A dataset in a store: its URL, and how to upload a shard's bytes and read its current token."""

    url: str
    put: Callable[[str, bytes], None]
    token: Callable[[str], str]


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    yield from azurite_fixture()


def http_remote(source: Path) -> Iterator[Remote]:
    from astreaming.testing.servers import StaticHTTPServer

    def put(name: str, data: bytes) -> None:
        tmp = source / f".{name}.new"
        tmp.write_bytes(data)
        os.replace(tmp, source / name)  # a new file: aiohttp's ETag (mtime, size) changes with it

    with StaticHTTPServer(source.parent) as server:
        url = f"{server.url}/{source.name}"

        def token(name: str) -> str:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/{name}", method="HEAD")) as resp:
                return str(resp.headers["ETag"])

        yield Remote(url, put, token)


def azure_remote(azurite: Azurite, source: Path, first: str, again: str) -> Remote:
    """``first``/``again``: how the dataset, then every later upload, is written ("put-blob": one
    request, "block-list": staged blocks committed without an md5, as a tool that sends none does)."""
    from azure.storage.blob import BlobBlock, BlobServiceClient

    container = f"c{uuid.uuid4().hex[:16]}"
    sdk = BlobServiceClient.from_connection_string(azurite.connection_string)
    sdk.create_container(container)
    style = [first]

    def put(name: str, data: bytes) -> None:
        blob = sdk.get_blob_client(container, f"data/{name}")
        if style[0] == "put-blob":
            blob.upload_blob(data, overwrite=True)  # the service sets Content-MD5
            return
        ids = [uuid.uuid4().hex for _ in range(2)]
        half = len(data) // 2
        blob.stage_block(ids[0], data[:half])
        blob.stage_block(ids[1], data[half:])
        blob.commit_block_list([BlobBlock(block_id=i) for i in ids])  # no md5: only the ETag

    def token(name: str) -> str:
        return str(sdk.get_blob_client(container, f"data/{name}").get_blob_properties().etag)

    for path in sorted(source.iterdir()):
        put(path.name, path.read_bytes())
    style[0] = again
    return Remote(f"azure://{AZURE_HOST}/{container}/data", put, token)


def s3_remote(server: MotoS3Server, source: Path) -> Remote:
    """The dataset uploaded as multipart uploads of one part (the ETag of a multipart upload is not the
    md5 of the bytes: ``"<md5 of the parts' md5s>-<parts>"``); every later upload is a single put (an
    ETag that is the md5: a content token)."""
    client = server.client()
    prefix = f"reupload-{uuid.uuid4().hex[:8]}/data"
    server.create_bucket(BUCKET)

    def multipart(name: str, data: bytes) -> None:
        key = f"{prefix}/{name}"
        upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        part = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=data)
        done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
        client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload=done)

    def put(name: str, data: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=data)

    def token(name: str) -> str:
        return str(client.head_object(Bucket=BUCKET, Key=f"{prefix}/{name}")["ETag"])

    for path in sorted(source.iterdir()):
        multipart(path.name, path.read_bytes())
    assert token("shard.00000.mds").endswith('-1"')
    return Remote(f"s3://{BUCKET}/{prefix}", put, token)


STORES = [
    "http",
    "azure-put-blob",
    "azure-block-list",
    "azure-block-list-then-put-blob",
    "s3-multipart-then-put",
]


@pytest.fixture(params=STORES)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Remote]]:
    """Writes version 1 of the dataset (``write`` sizes as keywords) and serves it from the store."""
    kind = request.param
    servers: list[Iterator[Remote]] = []

    def make(**sizes: Any) -> Remote:
        source = tmp_path / "site" / "data"
        write(source, 1, **sizes)
        if kind == "http":
            servers.append(http_remote(source))
            return next(servers[-1])
        if kind == "s3-multipart-then-put":
            moto: MotoS3Server = request.getfixturevalue("s3_server")
            for name, value in s3_env(moto).items():
                monkeypatch.setenv(name, value)
            return s3_remote(moto, source)
        server: Azurite = request.getfixturevalue("azurite")
        for name in list(os.environ):
            if name.startswith("AZURE_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", server.connection_string)
        first, _, again = kind.removeprefix("azure-").partition("-then-")
        return azure_remote(server, source, first, again or first)

    yield make
    for server in servers:
        next(server, None)


def upload_again(remote: Remote, source: Path) -> None:
    """Upload every shard again with the same bytes, and check that the store gave each a new token."""
    for shard in sorted(source.glob("shard.*")):
        before = remote.token(shard.name)
        remote.put(shard.name, shard.read_bytes())
        assert remote.token(shard.name) != before


@dataclass
class Parts:
    """The dataset's sizes for one way of downloading, and the sizes the downloader split in parts."""

    sizes: dict[str, Any]
    split: list[int]


@pytest.fixture(params=["whole", "parallel-ranges"])
def parts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Parts:
    """Shards downloaded whole, or in 32 KB parts fetched in parallel."""
    if request.param == "whole":
        return Parts({}, [])
    result = Parts(LARGE, [])
    monkeypatch.setattr(ranged, "MIN_PART", PART)
    monkeypatch.setattr(ranged, "MAX_PART", PART)

    def splits(self: ranged.RangedDownloader, size: int) -> bool:
        # Every shard of two parts or more, whatever the link gauge measured on 127.0.0.1 (one
        # connection may fill it, and the downloader would then fetch the shards whole).
        if size >= 2 * self.min_part:
            result.split.append(size)
            return True
        return False

    monkeypatch.setattr(ranged.RangedDownloader, "splits", splits)
    return result


def test_same_bytes_uploaded_again_read_on_other_bytes_fail(
    store: Callable[..., Remote], parts: Parts, tmp_path: Path
) -> None:
    remote = store(**parts.sizes)
    source = tmp_path / "site" / "data"
    samples = parts.sizes.get("samples", SAMPLES)
    # Room for 5 of the 8 shards (the least a cache_limit may leave is 4 of the largest): each epoch
    # evicts, and downloads again what it evicted.
    shard = max(p.stat().st_size for p in source.glob("shard.*"))
    limit = (source / "index.json").stat().st_size + 5 * shard
    ds = StreamingDataset(remote=remote.url, local=str(tmp_path / "cache"), batch_size=4, cache_limit=limit)
    try:
        first = list(ds)
        assert sorted(int(s["id"]) for s in first) == list(range(samples)) and versions_seen(first) == {1}
        assert ds.stats()["evictions"] > 0
        upload_again(remote, source)
        for _ in range(2):  # the second epoch reads the shards under the tokens recorded by the first
            downloads = ds.stats()["shards_downloaded"]
            again = list(ds)
            assert sorted(int(s["id"]) for s in again) == list(range(samples))
            assert versions_seen(again) == {1}
            assert ds.stats()["shards_downloaded"] > downloads  # evicted shards did come again
        assert len(parts.split) > 8 or not parts.sizes  # the parallel case downloaded in parts again
        rewrite(source, remote.put, **parts.sizes)
        seen: list[dict[str, Any]] = []
        with pytest.raises(ObjectChanged, match=r"/data/shard\.\d{5}\.mds: the object changed") as info:
            for sample in ds:
                seen.append(sample)
    finally:
        ds.close()
    assert versions_seen(seen) <= {1}
    assert info.value.url is not None and info.value.url.startswith(remote.url.partition("?")[0])
    name = info.value.url.rsplit("/", 1)[1]
    message = str(info.value)
    # Both versions named: the one this cache read the shard at (an upload's ETag, or its Content-MD5),
    # and the new one.
    assert re.search(r"version (ETag \S+|Content-MD5 \S+) was read before, now (ETag|Content-MD5) ", message)
    assert remote.token(name).strip('"') in message or "now Content-MD5" in message


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_on_over_the_same_bytes_and_stop_at_other_bytes(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    # Two DataLoader workers share the cache and its records: each downloads shards again after the
    # evictions, the same bytes under new ETags (blocks committed without an md5: opaque tokens, settled
    # by the bytes' digest in the worker) pass, and other bytes end the epoch in the main process with
    # the typed error naming the shard's URL.
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    source = tmp_path / "site" / "data"
    write(source, 1)
    remote = azure_remote(azurite, source, "block-list", "block-list")
    ds = limited(remote.url, tmp_path / "cache", source)

    def epoch() -> list[dict[str, Any]]:
        loader = StreamingDataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context)
        return list(loader)

    try:
        first = epoch()
        assert sorted(int(s["id"]) for s in first) == list(range(SAMPLES)) and versions_seen(first) == {1}
        assert ds.stats()["evictions"] > 0
        upload_again(remote, source)
        again = epoch()
        assert sorted(int(s["id"]) for s in again) == list(range(SAMPLES)) and versions_seen(again) == {1}
        rewrite(source, remote.put)
        with pytest.raises(ObjectChanged, match=r"/data/shard\.\d{5}\.mds: the object changed") as info:
            epoch()
    finally:
        ds.close()
    # Re-raised in the main process by torch with the worker's message (the ``url`` attribute stays
    # behind): the message names the shard's URL and both versions.
    assert re.search(rf"{re.escape(remote.url)}/shard\.\d{{5}}\.mds: the object changed", str(info.value))
    assert "the bytes differ" in str(info.value)


def test_random_access_by_ranges_stays_strict_over_the_same_bytes(tmp_path: Path) -> None:
    # ds[i] of a shard that is not cached reads its offsets and one sample by byte ranges: a few bytes
    # cannot show that a new ETag holds the bytes read before, so it stays an ObjectChanged (the README
    # lists it among the false alarms that remain).
    source = tmp_path / "site" / "data"
    write(source, 1)
    server = http_remote(source)
    remote = next(server)
    try:
        ds = StreamingDataset(remote=remote.url, local=str(tmp_path / "cache"))
        assert ds[0]["blob"] == b"\x01" * 100
        assert not list((tmp_path / "cache").glob("shard.*"))  # read by ranges, not downloaded
        upload_again(remote, source)
        with pytest.raises(ObjectChanged, match=r"/data/shard\.00000\.mds: the object changed"):
            ds[1]
    finally:
        next(server, None)
