"""``s3://bucket/key`` backend on aiobotocore (AWS S3 and S3-compatible stores).

Environment, as in mosaicml-streaming (reference §6), plus what boto users expect:

- credentials: the standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
  ``AWS_PROFILE`` or ``profile=``, config/credential files, instance roles); when there are none,
  requests go out unsigned, which works for public buckets;
- endpoint: ``endpoint_url=``, else ``S3_ENDPOINT_URL`` (R2, Backblaze, CoreWeave, MinIO), else botocore's
  own ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``;
- ``MOSAICML_STREAMING_AWS_REQUESTER_PAYS=bucket1,bucket2``: requests to those buckets pay as requester;
- ``S3_CANNED_ACL``: canned ACL applied to uploads.

botocore's own retries are switched off (one attempt per call) because the retry policy of
:mod:`astreaming.storage.retry` owns retries for every backend alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore import UNSIGNED
from botocore import exceptions as bexc
from botocore.loaders import JSONFileLoader

from astreaming.errors import ConfigError, ObjectNotFound, StorageError
from astreaming.storage import firstbyte, versions
from astreaming.storage.base import CHUNK_SIZE, Backend, ObjectInfo, check_length, check_range, collect_range
from astreaming.storage.partfile import PartFile
from astreaming.storage.s3errors import map_botocore
from astreaming.storage.shared import Lease, acquire
from astreaming.storage.urls import parse_url, redact

T = TypeVar("T")

#: botocore's data loaders (service models, endpoints), one per search path, shared by every session
#: of the process: a dataset opens a client for its index and another for its shards (in two event
#: loops), and loading the S3 model again costs each client 0.1-1 s. The loader holds parsed JSON only
#: (no socket, no loop), so sharing it is fork- and thread-safe; credentials stay per session.
_LOADERS: dict[tuple[str, ...], Any] = {}


class _DictJSONFileLoader(JSONFileLoader):  # type: ignore[misc]  # botocore ships no types
    """botocore's JSON file loader, parsing into plain dicts instead of ``OrderedDict``.

    A client's first build parses botocore's 1.25 MB ``endpoints.json``, the S3 model and its rule set;
    with ``object_pairs_hook=OrderedDict`` (a Python call per JSON object, and a larger object each)
    that took 71 ms of CPU and 13.7 MB resident here, with plain dicts 40 ms and 9.5 MB. Dicts keep
    insertion order, and nothing in botocore or aiobotocore uses an ``OrderedDict`` method on the
    loaded data (the model builders copy it into their own ``OrderedDict`` where they want one).
    The files and their order of lookup are botocore's (``.json``, then ``.json.gz``).
    """

    def load_file(self, file_path: str) -> Any:
        for ext, opener in ((".json", open), (".json.gz", gzip.open)):
            path = file_path + ext
            if os.path.isfile(path):
                with opener(path, "rb") as fp:
                    return json.loads(fp.read().decode("utf-8"))
        return None


def _session(profile: str | None) -> AioSession:
    """A new session (its own credentials and config) on the process's shared data loader."""
    session = AioSession(profile=profile)
    loader = session.get_component("data_loader")
    shared = _LOADERS.get(tuple(loader.search_paths))
    if shared is None:
        loader.file_loader = _DictJSONFileLoader()  # before it loaded anything (a fresh session's)
        shared = _LOADERS.setdefault(tuple(loader.search_paths), loader)
    session.register_component("data_loader", shared)
    return session


log = logging.getLogger(__name__)


def _answered(url: str, resp: dict[str, Any]) -> None:
    """Check a GetObject answer's ETag against the pinned version (:mod:`astreaming.storage.versions`).

    The ETag of an object uploaded in one part without SSE-KMS or SSE-C is the md5 of its bytes (a
    content token: the same bytes uploaded again keep it); a multipart ETag (``"<md5 of md5s>-<parts>"``)
    changes with the part size, and an encrypted object's with each upload, so those are opaque.
    """
    etag = resp.get("ETag")
    if not etag:
        versions.answered(url, None)
        return
    hexdigest = str(etag).strip('"').lower()
    encrypted = resp.get("SSECustomerAlgorithm") or str(resp.get("ServerSideEncryption", "")).startswith(
        "aws:kms"
    )
    md5 = hexdigest if _MD5_HEX.fullmatch(hexdigest) and not encrypted else None
    versions.answered(url, f"ETag {etag}", content=md5 is not None, md5=md5)


_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class S3Backend(Backend):
    """Backend for ``s3://bucket/key``.

    Args:
        timeout: Connect and read timeout in seconds.
        endpoint_url: S3 API endpoint; default ``S3_ENDPOINT_URL``, else botocore's lookup.
        region: Region name; default botocore's lookup (``AWS_REGION``, ``AWS_DEFAULT_REGION``, profile).
        profile: Named profile from the AWS config files.
        unsigned: ``True`` never signs (public buckets); ``None`` (default) signs when credentials exist.
        addressing_style: ``"auto"``, ``"path"`` or ``"virtual"``.
        max_connections: Size of the connection pool.
        multipart_threshold: Files larger than this are uploaded in parts.
        part_size: Size of one part of a multipart upload (S3 requires >= 5 MiB but for the last).
        upload_concurrency: Parts of one file uploaded at once.
        page_size: Keys per listing page.
        access_key_id: Explicit access key (otherwise the standard credential chain).
        secret_access_key: Secret for ``access_key_id``.
        session_token: Optional session token for temporary credentials.
    """

    scheme = ("s3",)

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        unsigned: bool | None = None,
        addressing_style: str = "auto",
        max_connections: int = 256,
        multipart_threshold: int = 64 << 20,
        part_size: int = 16 << 20,
        upload_concurrency: int = 4,
        page_size: int = 1000,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        super().__init__(timeout=timeout)
        if part_size < 5 << 20:
            raise ConfigError(f"part_size must be >= 5 MiB (S3's minimum part size), got {part_size}")
        if addressing_style not in ("auto", "path", "virtual"):
            raise ConfigError(f"addressing_style must be auto, path or virtual, got {addressing_style!r}")
        self.endpoint_url = endpoint_url or os.environ.get("S3_ENDPOINT_URL") or None
        self.region = region
        self.profile = profile
        self.unsigned = unsigned
        self.addressing_style = addressing_style
        self.max_connections = max_connections
        self.multipart_threshold = max(multipart_threshold, part_size)
        self.part_size = part_size
        self.upload_concurrency = max(1, upload_concurrency)
        self.page_size = page_size
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError("access_key_id and secret_access_key must be given together")
        self._keys = (access_key_id, secret_access_key, session_token)
        payers = os.environ.get("MOSAICML_STREAMING_AWS_REQUESTER_PAYS", "")
        self.requester_pays = frozenset(b.strip() for b in payers.split(",") if b.strip())
        self.canned_acl = os.environ.get("S3_CANNED_ACL") or None
        # endpoint -> lease on the process's shared client (storage.shared); OCI needs one per namespace
        # endpoint, S3 uses only the key None.
        self._clients: dict[str | None, Lease[Any]] = {}
        self._client_lock: asyncio.Lock | None = None

    # -- URL mapping (overridden by the OCI backend) -------------------------------------------------

    def _locate(self, url: str) -> tuple[str | None, str, str]:
        """``(endpoint, bucket, key)`` for ``url``; endpoint ``None`` means the default one."""
        parsed = parse_url(url)
        if parsed.scheme not in self.scheme:
            raise ConfigError(f"{type(self).__name__} cannot serve {redact(url)!r}")
        return None, parsed.bucket, parsed.key

    def _url(self, template: str, key: str) -> str:
        """The URL of ``key`` in the same bucket (and scheme) as ``template``."""
        parsed = parse_url(template)
        return f"{parsed.scheme}://{parsed.bucket}/{key}"

    def _endpoint(self, endpoint: str | None) -> str | None:
        return endpoint or self.endpoint_url

    def _config_extra(self) -> dict[str, Any]:
        return {}

    # -- clients -----------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_clients={}, _client_lock=None)
        return state

    async def _client(self, endpoint: str | None) -> Any:
        if self._closed:
            raise ConfigError(f"{type(self).__name__} is closed")
        lease = self._clients.get(endpoint)
        if lease is not None:
            return lease.client
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if endpoint not in self._clients:
                unsigned = bool(self.unsigned)
                self._clients[endpoint] = await acquire(
                    ("s3", self._client_key(endpoint, unsigned=unsigned)),
                    lambda: self._create_client(endpoint, unsigned=unsigned),
                )
            return self._clients[endpoint].client

    def _client_key(self, endpoint: str | None, *, unsigned: bool) -> Hashable:
        """Everything that goes into :meth:`_create_client`: equal keys would build equal clients."""
        # The credential chain and botocore's own settings read AWS_* variables when a client is built.
        env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        return (
            type(self).__qualname__,
            self._endpoint(endpoint),
            self.region,
            self.profile,
            unsigned,
            self._keys,
            self.addressing_style,
            self.max_connections,
            self.timeout,
            tuple(sorted(self._config_extra().items())),
            env,
        )

    def _create_client(self, endpoint: str | None, *, unsigned: bool) -> Any:
        config = AioConfig(
            max_pool_connections=self.max_connections,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            # One attempt per call: astreaming's retry policy retries, with its own budget and timeout.
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": self.addressing_style},
            # S3-compatibles (R2, B2, OCI, older MinIO) reject the CRC headers newer botocore adds.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            signature_version=UNSIGNED if unsigned else None,
            **self._config_extra(),
        )
        session = _session(self.profile)
        key, secret, token = self._keys
        keys = {} if key is None else {"aws_access_key_id": key, "aws_secret_access_key": secret}
        if key is not None and token:
            keys["aws_session_token"] = token
        url = self._endpoint(endpoint)
        # Plain HTTP has no certificate to verify (None keeps botocore's default). Skipping verification
        # also keeps aiobotocore from building an SSL context in a helper thread, a step that hung
        # intermittently in forked DataLoader workers.
        verify = False if url is not None and url.startswith("http://") else None
        return session.create_client(
            "s3", endpoint_url=url, region_name=self.region, config=config, verify=verify, **keys
        )

    async def _go_unsigned(self) -> None:
        """No credentials anywhere: reopen every client unsigned (public buckets), as mosaic did."""
        log.info("no AWS credentials found; using unsigned requests")
        self.unsigned = True
        await self._release_clients()

    async def _release_clients(self) -> None:
        leases, self._clients = self._clients, {}
        for lease in leases.values():
            await lease.release()

    async def aclose(self) -> None:
        await self._release_clients()
        await super().aclose()

    async def _do(self, url: str, what: str, fn: Callable[[Any, str, str], Awaitable[T]]) -> T:
        endpoint, bucket, key = self._locate(url)
        for _ in range(2):
            self.stats.requests += 1
            try:
                return await fn(await self._client(endpoint), bucket, key)
            except StorageError:
                self.stats.errors += 1
                raise
            except bexc.NoCredentialsError as e:
                if self.unsigned is None:
                    await self._go_unsigned()
                    continue
                self.stats.errors += 1
                raise StorageError(f"{redact(url)}: no AWS credentials found", url=redact(url)) from e
            except (
                bexc.BotoCoreError,
                bexc.ClientError,
                aiohttp.ClientError,
                TimeoutError,
                ConnectionError,
            ) as e:
                self.stats.errors += 1
                mapped = map_botocore(e, url, what)
                if mapped is None:
                    raise
                raise mapped from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _extra(self, bucket: str) -> dict[str, str]:
        return {"RequestPayer": "requester"} if bucket in self.requester_pays else {}

    # -- operations --------------------------------------------------------------------------------

    async def read_bytes(self, url: str) -> bytes:
        async def go(c: Any, bucket: str, key: str) -> bytes:
            resp = await c.get_object(Bucket=bucket, Key=key, **self._extra(bucket))
            async with resp["Body"] as body:
                data: bytes = await body.read()
            return data

        data = await self._do(url, "read", go)
        self.stats.bytes_downloaded += len(data)
        return data

    async def download(self, url: str, dest: Path) -> int:
        async def go(c: Any, bucket: str, key: str) -> int:
            resp = await c.get_object(Bucket=bucket, Key=key, **self._extra(bucket))
            firstbyte.arrived()
            _answered(url, resp)
            async with resp["Body"] as body, PartFile(Path(dest), url) as part:
                while chunk := await body.read(CHUNK_SIZE):
                    await part.write(chunk)
                return await part.commit(expected=resp.get("ContentLength"))

        n = await self._do(url, "download", go)
        self.stats.bytes_downloaded += n
        return n

    async def read_range(self, url: str, start: int, end: int) -> bytes:
        return await collect_range(self, url, start, end)

    async def read_range_into(
        self, url: str, start: int, end: int, sink: Callable[[bytes], Awaitable[None]]
    ) -> int:
        check_range(url, start, end)
        if start == end:
            return 0

        async def go(c: Any, bucket: str, key: str) -> int:
            try:
                resp = await c.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **self._extra(bucket)
                )
            except bexc.ClientError as e:
                if e.response.get("Error", {}).get("Code") == "InvalidRange":
                    return 0  # the range starts past the end of the object
                raise
            firstbyte.arrived()
            _answered(url, resp)
            got = 0
            async with resp["Body"] as body:
                while chunk := await body.read(CHUNK_SIZE):
                    await sink(chunk)
                    got += len(chunk)
            check_length(url, got, resp.get("ContentLength"))
            return got

        n = await self._do(url, "range read", go)
        self.stats.bytes_downloaded += n
        return n

    async def stat(self, url: str) -> ObjectInfo:
        async def go(c: Any, bucket: str, key: str) -> ObjectInfo:
            head = await c.head_object(Bucket=bucket, Key=key, **self._extra(bucket))
            return ObjectInfo(url=url, size=int(head["ContentLength"]), etag=head.get("ETag"))

        return await self._do(url, "stat", go)

    async def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        token: str | None = None
        while True:

            async def go(c: Any, bucket: str, prefix: str, token: str | None = token) -> dict[str, Any]:
                kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": self.page_size}
                if token:
                    kwargs["ContinuationToken"] = token
                page: dict[str, Any] = await c.list_objects_v2(**kwargs, **self._extra(bucket))
                return page

            page = await self._do(url_prefix, "list", go)
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    url=self._url(url_prefix, item["Key"]), size=int(item["Size"]), etag=item.get("ETag")
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def upload(self, src: Path, url: str) -> None:
        size = os.path.getsize(src)
        acl = {"ACL": self.canned_acl} if self.canned_acl else {}
        if size <= self.multipart_threshold:

            async def simple(c: Any, bucket: str, key: str) -> None:
                data = await asyncio.to_thread(Path(src).read_bytes)
                await c.put_object(Bucket=bucket, Key=key, Body=data, **acl, **self._extra(bucket))

            await self._do(url, "upload", simple)
        else:
            await self._do(url, "upload", lambda c, b, k: self._multipart(c, b, k, Path(src), size, acl))
        self.stats.bytes_uploaded += size

    async def _multipart(
        self, c: Any, bucket: str, key: str, src: Path, size: int, acl: dict[str, str]
    ) -> None:
        """Multipart upload: at most ``upload_concurrency`` parts in memory and in flight."""
        extra = self._extra(bucket)
        created = await c.create_multipart_upload(Bucket=bucket, Key=key, **acl, **extra)
        upload_id = created["UploadId"]
        limit = asyncio.Semaphore(self.upload_concurrency)
        n_parts = -(-size // self.part_size)

        async def part(number: int) -> dict[str, Any]:
            async with limit:

                def read() -> bytes:
                    with open(src, "rb") as f:
                        f.seek((number - 1) * self.part_size)
                        return f.read(self.part_size)

                data = await asyncio.to_thread(read)
                resp = await c.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, **extra
                )
                return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            tasks = [asyncio.ensure_future(part(i)) for i in range(1, n_parts + 1)]
            try:
                parts = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            await c.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra
            )
        except BaseException:
            # Abandoned parts are billed until aborted; abort even when we are being cancelled.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, **extra)
                )
            raise

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, url: str) -> None:
        # S3 deletes of missing keys succeed silently; the interface promises ObjectNotFound.
        await self.stat(url)

        async def go(c: Any, bucket: str, key: str) -> None:
            await c.delete_object(Bucket=bucket, Key=key, **self._extra(bucket))

        await self._do(url, "delete", go)


__all__ = ["S3Backend", "map_botocore"]
