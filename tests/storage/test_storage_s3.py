"""s3:// and oci:// specifics against moto: multipart, unsigned fallback, env variables, error mapping."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from storage_cases import S3_BUCKET

from astreaming.errors import (
    ConfigError,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    TransientStorageError,
)
from astreaming.storage.oci import OCIBackend, oci_config_region
from astreaming.storage.registry import backend_for
from astreaming.storage.s3 import S3Backend
from astreaming.storage.s3errors import map_botocore
from astreaming.testing.servers import MotoS3Server

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("aws_env")]


def key() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def capture(b: S3Backend, client: Any, event: str) -> list[dict[str, str]]:
    """Record the headers of every request the client sends for ``event`` (e.g. PutObject)."""
    seen: list[dict[str, str]] = []

    def hook(request: Any, **_: Any) -> None:
        seen.append(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )

    client.meta.events.register(f"before-send.s3.{event}", hook)
    return seen


async def test_multipart_upload_parts_and_abort(s3_server: MotoS3Server, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * ((11 << 20) // 256))
    k = key()
    async with S3Backend(endpoint_url=s3_server.url, multipart_threshold=5 << 20, part_size=5 << 20) as b:
        url = f"s3://{S3_BUCKET}/{k}/big.bin"
        await b.upload(src, url)
        info = await b.stat(url)
        assert info.size == src.stat().st_size
        assert info.etag is not None and info.etag.strip('"').endswith("-3")  # 5 + 5 + 1 MiB parts
        assert (
            await b.read_range(url, (5 << 20) - 3, (5 << 20) + 3)
            == src.read_bytes()[(5 << 20) - 3 : (5 << 20) + 3]
        )

        # A failing part aborts the whole upload: no multipart upload is left behind to be billed.
        real = await b._client(None)

        class FailingPart:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            async def upload_part(self, **kw: Any) -> Any:
                if kw["PartNumber"] == 2:
                    raise EndpointConnectionError(endpoint_url=s3_server.url)
                return await real.upload_part(**kw)

        with pytest.raises(EndpointConnectionError):
            await b._multipart(FailingPart(), S3_BUCKET, f"{k}/failed.bin", src, src.stat().st_size, {})
        uploads = await real.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=f"{k}/")
        assert uploads.get("Uploads", []) == []
        assert not await b.exists(f"s3://{S3_BUCKET}/{k}/failed.bin")


async def test_unsigned_fallback_without_credentials(
    s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = key()
    client = s3_server.client()
    client.put_object(Bucket=S3_BUCKET, Key=f"{k}/public.txt", Body=b"public data", ACL="public-read")
    client.close()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with S3Backend(endpoint_url=s3_server.url) as b:
        assert b.unsigned is None
        assert await b.read_bytes(f"s3://{S3_BUCKET}/{k}/public.txt") == b"public data"
        assert b.unsigned is True  # switched once, for good
    async with S3Backend(endpoint_url=s3_server.url, unsigned=False) as b:
        with pytest.raises(StorageError, match="no AWS credentials"):
            await b.read_bytes(f"s3://{S3_BUCKET}/{k}/public.txt")


async def test_requester_pays_and_canned_acl(
    s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOSAICML_STREAMING_AWS_REQUESTER_PAYS", f"other-bucket, {S3_BUCKET}")
    monkeypatch.setenv("S3_CANNED_ACL", "public-read")
    src = tmp_path / "f.txt"
    src.write_bytes(b"acl")
    k = key()
    async with S3Backend(endpoint_url=s3_server.url) as b:
        client = await b._client(None)
        puts = capture(b, client, "PutObject")
        gets = capture(b, client, "GetObject")
        await b.upload(src, f"s3://{S3_BUCKET}/{k}/f.txt")
        assert await b.read_bytes(f"s3://{S3_BUCKET}/{k}/f.txt") == b"acl"
    assert puts[0]["x-amz-acl"] == "public-read" and puts[0]["x-amz-request-payer"] == "requester"
    assert gets[0]["x-amz-request-payer"] == "requester"


async def test_endpoint_from_environment(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    k = key()
    client = s3_server.client()
    client.put_object(Bucket=S3_BUCKET, Key=f"{k}/e", Body=b"env")
    client.close()
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.url)
    async with backend_for(f"s3://{S3_BUCKET}/{k}/e") as b:
        assert await b.read_bytes(f"s3://{S3_BUCKET}/{k}/e") == b"env"
    monkeypatch.delenv("S3_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)  # botocore's own variable
    async with backend_for(f"s3://{S3_BUCKET}/{k}/e") as b:
        assert await b.read_bytes(f"s3://{S3_BUCKET}/{k}/e") == b"env"


async def test_oci_through_the_s3_compatible_api(
    s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OCI_ENDPOINT_URL", s3_server.url)
    k = key()
    src = tmp_path / "o.bin"
    src.write_bytes(b"oracle")
    base = f"oci://{S3_BUCKET}@mynamespace/{k}"
    async with backend_for(base) as b:
        assert isinstance(b, OCIBackend) and b.addressing_style == "path"
        await b.upload(src, f"{base}/o.bin")
        assert await b.read_bytes(f"{base}/o.bin") == b"oracle"
        assert [x.url async for x in b.list(f"{base}/")] == [f"{base}/o.bin"]
        with pytest.raises(ConfigError, match="bucket@namespace"):
            await b.read_bytes(f"oci://{S3_BUCKET}/{k}/o.bin")


def test_oci_endpoint_and_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCI_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("OCI_REGION", raising=False)
    cfg = tmp_path / "oci-config"
    cfg.write_text("[DEFAULT]\nregion = us-ashburn-1\n\n[OTHER]\nregion = eu-frankfurt-1\n")
    monkeypatch.setenv("OCI_CONFIG_FILE", str(cfg))
    assert oci_config_region() == "us-ashburn-1"
    assert oci_config_region(profile="OTHER") == "eu-frankfurt-1"
    b = OCIBackend()
    assert b._endpoint("ns1") == "https://ns1.compat.objectstorage.us-ashburn-1.oraclecloud.com"
    monkeypatch.setenv("OCI_REGION", "ap-tokyo-1")
    assert OCIBackend()._endpoint("ns2") == "https://ns2.compat.objectstorage.ap-tokyo-1.oraclecloud.com"
    monkeypatch.delenv("OCI_REGION")
    monkeypatch.setenv("OCI_CONFIG_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="OCI_REGION"):
        OCIBackend()._endpoint("ns")


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "msg"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("NoSuchKey", 404), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),
        (client_error("NoSuchBucket", 404), ObjectNotFound),
        (client_error("AccessDenied", 403), PermissionDenied),
        (client_error("InvalidAccessKeyId", 403), PermissionDenied),
        (client_error("SlowDown", 503), TransientStorageError),
        (client_error("InternalError", 500), TransientStorageError),
        (client_error("RequestTimeout", 400), TransientStorageError),
        (client_error("BadDigest", 400), StorageError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientStorageError),
    ],
)
def test_botocore_error_mapping(error: Exception, expected: type[StorageError]) -> None:
    mapped = map_botocore(error, "s3://b/k", "read")
    assert type(mapped) is expected
    assert mapped is not None and "s3://b/k" in str(mapped)


def test_throttling_carries_retry_after() -> None:
    mapped = map_botocore(client_error("SlowDown", 503, {"retry-after": "4"}), "s3://b/k", "read")
    assert isinstance(mapped, TransientStorageError) and mapped.retry_after == 4.0


def test_part_size_minimum() -> None:
    with pytest.raises(ConfigError, match="part_size"):
        S3Backend(part_size=1 << 20)


async def test_gcs_hmac_keys_select_the_s3_protocol(
    s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """mosaic's GCS_KEY/GCS_SECRET mode: gs:// through the S3-compatible XML API (moto stands in)."""
    from astreaming.storage.gcs import GCSBackend
    from astreaming.storage.gcs_hmac import GCSHMACBackend

    assert isinstance(backend_for("gs://b/k"), GCSBackend)
    monkeypatch.setenv("GCS_KEY", "GOOG1EXAMPLE")
    monkeypatch.setenv("GCS_SECRET", "secret")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:1")  # for s3:// only; must not leak into gs://
    assert backend_for("gs://b/k").endpoint_url == "https://storage.googleapis.com"  # type: ignore[attr-defined]
    k = key()
    src = tmp_path / "h.bin"
    src.write_bytes(b"hmac")
    async with backend_for(f"gs://{S3_BUCKET}/{k}", endpoint_url=s3_server.url) as b:
        assert isinstance(b, GCSHMACBackend)
        client = await b._client(None)
        sent = capture(b, client, "PutObject")
        await b.upload(src, f"gs://{S3_BUCKET}/{k}/h.bin")
        assert [x.url async for x in b.list(f"gs://{S3_BUCKET}/{k}/")] == [f"gs://{S3_BUCKET}/{k}/h.bin"]
    assert "GOOG1EXAMPLE" in sent[0]["authorization"]  # signed with the HMAC key, not AWS_* credentials


async def test_backends_share_the_service_model_but_not_credentials(
    s3_server: MotoS3Server, tmp_path: Path
) -> None:
    # A dataset opens one client for its index and another for its shards: the second must not load
    # botocore's S3 model again, and each keeps the credentials it was given.
    k = key()
    src = tmp_path / "a"
    src.write_bytes(b"payload")
    async with S3Backend(endpoint_url=s3_server.url) as writer:
        await writer.upload(src, f"s3://{S3_BUCKET}/{k}/a")
    async with (
        S3Backend(endpoint_url=s3_server.url) as first,
        S3Backend(endpoint_url=s3_server.url, access_key_id="other", secret_access_key="secret") as second,
    ):
        one, two = await first._client(None), await second._client(None)
        assert one is not two
        assert one._loader is two._loader
        keys = [(await c._get_credentials().get_frozen_credentials()).access_key for c in (one, two)]
        assert keys[0] != keys[1]
        assert keys[1] == "other"
        assert await first.read_range(f"s3://{S3_BUCKET}/{k}/a", 0, 7) == b"payload"
        assert await second.read_range(f"s3://{S3_BUCKET}/{k}/a", 0, 3) == b"pay"


def test_shared_loader_parses_botocore_data_as_plain_dicts_unchanged() -> None:
    """The process's shared botocore data loader parses into plain dicts (botocore's own OrderedDicts
    cost a client's first build 30 ms and 4 MB here): the same data, keys in the same order."""
    import json

    from botocore.loaders import create_loader

    from astreaming.storage.s3 import _DictJSONFileLoader, _session

    assert isinstance(_session(None).get_component("data_loader").file_loader, _DictJSONFileLoader)
    # Fresh loaders on both sides: botocore's endpoint resolver merges defaults into the data it was
    # given, so the process's shared loader holds what earlier clients made of it.
    ours, theirs = create_loader(), create_loader()
    ours.file_loader = _DictJSONFileLoader()
    loaded = [(ours.load_data(n), theirs.load_data(n)) for n in ("endpoints", "partitions", "_retry")]
    loaded += [
        (ours.load_service_model("s3", t), theirs.load_service_model("s3", t))
        for t in ("service-2", "endpoint-rule-set-1")
    ]
    for mine, botocores in loaded:
        assert type(mine) is dict
        assert json.dumps(mine) == json.dumps(botocores)  # equal, and in the same order
