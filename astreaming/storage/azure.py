"""``azure://account.blob.core.windows.net/container/blob``: Azure Blob Storage (azure-storage-blob aio).

Needs the ``azure`` extra (``pip install 'astreaming[azure]'``); the registry imports this module only
when an ``azure://`` URL is used, so ``import astreaming`` never imports the SDK.

Where requests go: ``endpoint_url`` (or ``AZURE_STORAGE_ENDPOINT``), else the ``BlobEndpoint`` of the
connection string (``connection_string`` or ``AZURE_STORAGE_CONNECTION_STRING``, e.g. Azurite's), else
``https://<host of the URL>`` (a host without a dot gets ``.blob.core.windows.net`` appended).

Credentials, first match wins:

1. a SAS token in the URL's query (``azure://acct.blob.core.windows.net/c/b?sv=...&sig=...``);
2. the ``credential`` option (any azure-identity credential object);
3. ``sas_token`` / ``AZURE_STORAGE_SAS_TOKEN``;
4. ``account_key`` / ``AZURE_ACCOUNT_ACCESS_KEY`` (as mosaicml-streaming), with the account name from
   ``account_name`` / ``AZURE_ACCOUNT_NAME``, else the first label of the URL's host;
5. the connection string's own key or SAS;
6. ``DefaultAzureCredential`` (environment, managed identity, Azure CLI, ...) when azure-identity is
   installed and ``anonymous`` is false;
7. anonymous access (public containers).

The SDK's own retries are turned off (``retry_total=0``): one call is one attempt, and
:mod:`astreaming.storage.retry` decides about retrying. Large uploads go as blocks staged
concurrently and committed at the end, so a failed upload never leaves a partial blob in place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import math
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from azure.core import exceptions as az
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from astreaming.errors import (
    AstreamingError,
    ConfigError,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    TransientStorageError,
)
from astreaming.storage import versions
from astreaming.storage.base import Backend, ObjectInfo, check_length, check_range
from astreaming.storage.errormap import from_status, map_aiohttp
from astreaming.storage.oserrors import map_os_error
from astreaming.storage.partfile import PartFile, settle
from astreaming.storage.urls import parse_url, redact

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_ENDPOINT = "AZURE_STORAGE_ENDPOINT"
ENV_ACCOUNT_NAME = "AZURE_ACCOUNT_NAME"
ENV_ACCOUNT_KEY = "AZURE_ACCOUNT_ACCESS_KEY"
ENV_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"

_MiB = 1 << 20
_MAX_BLOCKS = 50_000  # Azure's limit of blocks in one block blob
_MAX_BLOCK_SIZE = 4000 * _MiB


@dataclass(frozen=True)
class _Ref:
    """One parsed ``azure://`` URL."""

    host: str
    container: str
    blob: str
    sas: str


def _parse(url: str, *, need_blob: bool = True) -> _Ref:
    parsed = parse_url(url)
    if parsed.scheme != "azure":
        raise ConfigError(f"{redact(url)!r} is not an azure:// URL")
    container, _, blob = parsed.key.partition("/")
    if not container or (need_blob and not blob):
        what = "a container and a blob name" if need_blob else "a container"
        raise ConfigError(
            f"azure URL {redact(url)!r} must name {what}: azure://<account>.blob.core.windows.net/<container>/<blob>"
        )
    return _Ref(parsed.bucket, container, blob, parsed.query)


def _map(e: Exception, url: str, what: str) -> StorageError | None:
    """The typed error for an Azure SDK or network exception, or ``None`` to let ``e`` through."""
    shown = redact(url)
    if isinstance(e, AstreamingError):
        return None  # already typed (e.g. a CacheError from the .part file)
    # Error codes only, never the SDK's message: for auth failures it quotes the signed request.
    code = getattr(e, "error_code", None) or ""
    if isinstance(e, az.DecodeError):  # includes IncompleteReadError: a body cut short
        return TransientStorageError(
            f"{shown}: {what} failed: body incomplete ({type(e).__name__})", url=shown
        )
    if isinstance(e, az.ResourceNotFoundError):
        return ObjectNotFound(f"{shown}: object not found ({code or 'HTTP 404'})", url=shown)
    if isinstance(e, az.ClientAuthenticationError):
        return PermissionDenied(
            f"{shown}: access denied ({code or e.status_code or 'no credential'})", url=shown
        )
    if isinstance(e, az.HttpResponseError):
        status = e.status_code
        if status is None:
            return TransientStorageError(f"{shown}: {what} failed ({type(e).__name__})", url=shown)
        if status == 412:
            # The blob changed between the chunks of one download (the SDK pins the ETag): a fresh
            # attempt reads the new version whole.
            return TransientStorageError(f"{shown}: object changed during {what} ({code})", url=shown)
        response: Any = e.response
        headers = dict(response.headers) if response is not None else None
        return from_status(status, url, headers=headers, detail=code, what=what)
    if isinstance(e, (az.ServiceRequestError, az.ServiceResponseError)):
        return TransientStorageError(f"{shown}: {what} failed ({type(e).__name__})", url=shown)
    return map_aiohttp(e, url, what=what)


def _answered(url: str, downloader: Any) -> None:
    """Check a download's version against the pinned one (:mod:`astreaming.storage.versions`).

    A blob's ``Content-MD5`` (reported for the whole blob with ranged answers too) is a content token:
    the same bytes uploaded again keep it, while the ETag changes with every upload. The service sets it
    for a single-shot upload; a block-list upload has one only if the uploader sent it, as
    :meth:`AzureBackend.upload` does. Without one, the ETag is an opaque token.
    """
    props = downloader.properties
    settings = getattr(props, "content_settings", None)
    md5 = versions.md5_of_base64(getattr(settings, "content_md5", None))
    if md5 is not None:
        shown = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
        versions.answered(url, f"Content-MD5 {shown}", content=True, md5=md5)
        return
    etag = getattr(props, "etag", None)
    versions.answered(url, f"ETag {etag}" if etag else None)


class _ResponseTracker:
    """Closes the aiohttp responses an operation opened, when the operation ends.

    azure-core leaves the aiohttp response open when reading its body times out or is cancelled
    (``AioHttpStreamDownloadGenerator`` only closes it on payload errors). The connection then stays
    checked out until garbage collection, which warns "Unclosed connection" at a random later time.
    Responses are recorded per task as they start (an aiohttp trace hook) and closed when the
    operation that made them ends, whatever way it ends; closing a released response does nothing.
    """

    def __init__(self) -> None:
        self._open: dict[asyncio.Task[Any], list[weakref.ref[aiohttp.ClientResponse]]] = {}

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_end.append(self._on_request_end)
        return config

    async def _on_request_end(
        self, session: Any, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        responses = self._open.get(asyncio.current_task())  # type: ignore[arg-type]
        if responses is not None:
            responses.append(weakref.ref(params.response))

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None or task in self._open:  # no task, or nested: the outer scope closes them
            yield
            return
        self._open[task] = []
        try:
            yield
        finally:
            for ref in self._open.pop(task):
                response = ref()
                if response is not None:
                    response.close()


def _connection_string_credential(connection_string: str) -> Any:
    """The SAS token or shared key of a connection string (for use with an endpoint override)."""
    parts: dict[str, str] = {}
    for item in connection_string.split(";"):
        name, sep, value = item.partition("=")
        if sep:
            parts[name.strip().lower()] = value.strip()
    if parts.get("sharedaccesssignature"):
        return parts["sharedaccesssignature"].lstrip("?")
    if parts.get("accountname") and parts.get("accountkey"):
        return {"account_name": parts["accountname"], "account_key": parts["accountkey"]}
    return None


def _block_id(token: str, index: int) -> str:
    # Every id of a blob must have the same length; the per-upload token keeps two concurrent uploads
    # of one blob from committing each other's blocks.
    return base64.b64encode(f"{token}-{index:06d}".encode()).decode()


def _md5_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").digest()


def _pread(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


class AzureBackend(Backend):
    """Backend for ``azure://<account>.blob.core.windows.net/<container>/<blob>``.

    Args:
        timeout: Per-request timeout in seconds (connect and each socket read).
        connection_string: An Azure Storage connection string; default ``AZURE_STORAGE_CONNECTION_STRING``.
        endpoint_url: Blob service endpoint overriding the URL's host (e.g. Azurite's
            ``http://127.0.0.1:10000/devstoreaccount1``); default ``AZURE_STORAGE_ENDPOINT``.
        account_name: Account name for ``account_key``; default ``AZURE_ACCOUNT_NAME``, else the URL's
            first host label.
        account_key: Shared key; default ``AZURE_ACCOUNT_ACCESS_KEY``.
        sas_token: SAS token (with or without ``?``); default ``AZURE_STORAGE_SAS_TOKEN``.
        credential: Any credential object azure-storage-blob accepts (takes precedence over keys).
        anonymous: Never look for credentials (public containers).
        block_size: Block size of large uploads, in bytes.
        single_put_size: Files up to this size upload in one request. The SDK sends a single put as
            raw bytes, which aiohttp warns about above 1 MiB (the default); larger files go as blocks,
            streamed from file objects.
        upload_concurrency: Blocks of one upload in flight.
        page_size: Blobs per page when listing.
    """

    scheme = ("azure",)

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        connection_string: str | None = None,
        endpoint_url: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        credential: Any = None,
        anonymous: bool = False,
        block_size: int = 8 * _MiB,
        single_put_size: int = 1 * _MiB,
        upload_concurrency: int = 4,
        page_size: int = 5000,
    ) -> None:
        super().__init__(timeout=timeout)
        env = os.environ
        self.connection_string = connection_string or env.get(ENV_CONNECTION_STRING) or None
        self.endpoint_url = (endpoint_url or env.get(ENV_ENDPOINT) or "").rstrip("/") or None
        self.account_name = account_name or env.get(ENV_ACCOUNT_NAME) or None
        self._account_key = account_key or env.get(ENV_ACCOUNT_KEY) or None
        self._sas_token = (sas_token or env.get(ENV_SAS_TOKEN) or "").lstrip("?") or None
        self._credential = credential
        self.anonymous = anonymous
        given = {
            "connection_string": connection_string,
            "_account_key": account_key,
            "_sas_token": sas_token,
        }
        self._env_secrets = frozenset(name for name, value in given.items() if value is None)
        for name, value in (("block_size", block_size), ("single_put_size", single_put_size)):
            if not 0 < value <= _MAX_BLOCK_SIZE:
                raise ConfigError(f"{name} must be in (0, {_MAX_BLOCK_SIZE}] bytes, got {value!r}")
        for name, value in (("upload_concurrency", upload_concurrency), ("page_size", page_size)):
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value!r}")
        self.block_size = block_size
        self.single_put_size = single_put_size
        self.upload_concurrency = upload_concurrency
        self.page_size = page_size
        # Live objects: names start with "_client" so pickling (DataLoader workers) drops them.
        self._clients: dict[tuple[str, str], BlobServiceClient] | None = None
        self._client_default_credential: Any = None
        self._client_responses: _ResponseTracker | None = None

    # -- clients -----------------------------------------------------------------------------------

    def _reload_env_secrets(self) -> None:
        env = os.environ
        if "connection_string" in self._env_secrets:
            self.connection_string = env.get(ENV_CONNECTION_STRING) or None
        if "_account_key" in self._env_secrets:
            self._account_key = env.get(ENV_ACCOUNT_KEY) or None
        if "_sas_token" in self._env_secrets:
            self._sas_token = (env.get(ENV_SAS_TOKEN) or "").lstrip("?") or None

    def _account_url(self, host: str) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return f"https://{host if '.' in host else host + '.blob.core.windows.net'}"

    def _shared_credential(self, host: str) -> Any:
        if self._credential is not None:
            return self._credential
        if self._sas_token:
            return self._sas_token
        if self._account_key:
            name = self.account_name or host.split(".", 1)[0]
            return {"account_name": name, "account_key": self._account_key}
        return None

    def _default_credential(self) -> Any:
        if self.anonymous:
            return None
        if self._client_default_credential is None:
            try:
                from azure.identity.aio import DefaultAzureCredential
            except ImportError:
                return None  # no azure-identity: anonymous access
            self._client_default_credential = DefaultAzureCredential()
        return self._client_default_credential

    def _service(self, ref: _Ref) -> BlobServiceClient:
        if self._closed:
            raise ConfigError("AzureBackend is closed; create a new one (backend_for) to use it again")
        if self._clients is None:
            self._clients = {}
        # One client per account and SAS token: with an endpoint override every host shares one.
        key = ("" if self.endpoint_url or self.connection_string else ref.host, ref.sas)
        client = self._clients.get(key)
        if client is not None:
            return client
        credential = ref.sas or self._shared_credential(ref.host)
        if credential is None and self.connection_string and self.endpoint_url:
            credential = _connection_string_credential(self.connection_string)
        if credential is None and not self.connection_string:
            credential = self._default_credential()
        if self._client_responses is None:
            self._client_responses = _ResponseTracker()
        # Our own session (the SDK's defaults otherwise) so that responses can be tracked.
        session = aiohttp.ClientSession(
            auto_decompress=False,
            trust_env=True,  # proxy settings from the environment, as the SDK does
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[self._client_responses.trace_config()],
        )
        options: dict[str, Any] = {
            "session": session,
            "session_owner": True,  # closing the client closes the session
            "retry_total": 0,  # one call = one attempt; astreaming.storage.retry retries
            "connection_timeout": self.timeout,
            "read_timeout": self.timeout,
            # Bound the memory of one download: the SDK buffers its first GET and each chunk whole.
            "max_single_get_size": 4 * _MiB,
            "max_chunk_get_size": 4 * _MiB,
        }
        if self.connection_string and not self.endpoint_url:
            if credential is not None:
                options["credential"] = credential  # overrides the connection string's own
            client = BlobServiceClient.from_connection_string(self.connection_string, **options)
        else:
            client = BlobServiceClient(self._account_url(ref.host), credential=credential, **options)
        self._clients[key] = client
        return client

    def _blob(self, ref: _Ref) -> BlobClient:
        return self._service(ref).get_blob_client(ref.container, ref.blob)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, None
        for client in (clients or {}).values():
            await client.close()
        credential, self._client_default_credential = self._client_default_credential, None
        if credential is not None:
            await credential.close()
        await super().aclose()

    # -- error boundary ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, url: str, what: str, *, count: bool = True) -> Iterator[None]:
        """Count the request and translate whatever the SDK raises inside the block."""
        if count:
            self.stats.requests += 1
        try:
            with self._responses():
                yield
        except Exception as e:
            self.stats.errors += 1
            mapped = _map(e, url, what)
            if mapped is None:
                raise
            raise mapped from e

    def _responses(self) -> contextlib.AbstractContextManager[None]:
        tracker = self._client_responses
        return tracker.scope() if tracker is not None else contextlib.nullcontext()

    # -- operations --------------------------------------------------------------------------------

    async def read_bytes(self, url: str) -> bytes:
        blob = self._blob(_parse(url))
        with self._errors(url, "read"):
            downloader = await blob.download_blob(max_concurrency=1)
            data = await downloader.readall()
        check_length(url, len(data), downloader.size)
        self.stats.bytes_downloaded += len(data)
        return data

    async def download(self, url: str, dest: Path) -> int:
        blob = self._blob(_parse(url))
        async with PartFile(Path(dest), url) as part:
            with self._errors(url, "download"):
                downloader = await blob.download_blob(max_concurrency=1)
                _answered(url, downloader)
                async for chunk in downloader.chunks():
                    await part.write(chunk)
            n = await part.commit(expected=downloader.size)
        self.stats.bytes_downloaded += n
        return n

    async def read_range(self, url: str, start: int, end: int) -> bytes:
        check_range(url, start, end)
        blob = self._blob(_parse(url))
        if start == end:
            return b""
        try:
            with self._errors(url, "range read"):
                downloader = await blob.download_blob(offset=start, length=end - start, max_concurrency=1)
                _answered(url, downloader)
                data = await downloader.readall()
        except StorageError as e:
            if isinstance(e.__cause__, az.HttpResponseError) and e.__cause__.status_code == 416:
                return b""  # the range starts at or past the end of the blob
            raise
        check_length(url, len(data), downloader.size)
        self.stats.bytes_downloaded += len(data)
        return data

    async def stat(self, url: str) -> ObjectInfo:
        blob = self._blob(_parse(url))
        with self._errors(url, "stat"):
            props = await blob.get_blob_properties()
        return ObjectInfo(url=url, size=int(props.size), etag=props.etag)

    async def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:  # type: ignore[override]
        # The first path segment is the container; the rest is a plain blob-name prefix.
        ref = _parse(url_prefix, need_blob=False)
        container = self._service(ref).get_container_client(ref.container)
        base = f"azure://{ref.host}/{ref.container}/"
        tail = f"?{ref.sas}" if ref.sas else ""
        pages = container.list_blobs(name_starts_with=ref.blob or None, results_per_page=self.page_size)
        try:
            with self._errors(url_prefix, "list", count=False):
                async for page in pages.by_page():
                    self.stats.requests += 1  # one request per page
                    async for props in page:
                        yield ObjectInfo(
                            url=f"{base}{props.name}{tail}", size=int(props.size), etag=props.etag
                        )
        except ObjectNotFound:
            return  # a missing container lists as empty, like a missing prefix

    async def upload(self, src: Path, url: str) -> None:
        src = Path(src)
        blob = self._blob(_parse(url))
        try:
            size = (await asyncio.to_thread(src.stat)).st_size
        except OSError as e:
            raise map_os_error(e, str(src)) from e
        if size <= self.single_put_size:
            data = await asyncio.to_thread(src.read_bytes)
            with self._errors(url, "upload"):
                await blob.upload_blob(data, overwrite=True, length=len(data), max_concurrency=1)
        else:
            await self._upload_blocks(blob, src, size, url)
        self.stats.bytes_uploaded += size

    async def _upload_blocks(self, blob: BlobClient, src: Path, size: int, url: str) -> None:
        block = max(self.block_size, math.ceil(size / _MAX_BLOCKS))
        count = math.ceil(size / block)
        token = uuid.uuid4().hex[:16]
        ids = [_block_id(token, i) for i in range(count)]

        async def stage(i: int) -> None:
            data = await asyncio.to_thread(_pread, src, i * block, block)
            with self._errors(url, f"upload block {i}"):
                # A file object, not bytes: aiohttp warns (ResourceWarning) about bodies > 1 MiB given
                # as bytes; the SDK passes a file object through to the transport.
                await blob.stage_block(ids[i], io.BytesIO(data), length=len(data))

        # The blob's md5, hashed while the blocks go up: the service records a Content-MD5 for a
        # single-shot upload only, and readers pin a blob to it (the same bytes uploaded again then keep
        # their version, unlike the ETag: astreaming.storage.versions).
        digest = asyncio.ensure_future(asyncio.to_thread(_md5_file, src))
        try:
            await _bounded(stage, count, self.upload_concurrency)
        except BaseException:
            with contextlib.suppress(Exception):
                await settle(digest)  # the thread reads src: waited for, its outcome moot
            raise
        try:
            md5 = await settle(digest)
        except OSError as e:
            raise map_os_error(e, str(src)) from e
        settings = ContentSettings(content_md5=bytearray(md5))
        # Until this commit the blob (or its previous version) is untouched; uncommitted blocks are
        # garbage-collected by the service.
        with self._errors(url, "commit upload"):
            await blob.commit_block_list([BlobBlock(block_id=i) for i in ids], content_settings=settings)

    async def exists(self, url: str) -> bool:
        blob = self._blob(_parse(url))
        with self._errors(url, "exists"):
            return bool(await blob.exists())

    async def delete(self, url: str) -> None:
        blob = self._blob(_parse(url))
        with self._errors(url, "delete"):
            await blob.delete_blob(delete_snapshots="include")


async def _bounded(fn: Callable[[int], Awaitable[None]], count: int, concurrency: int) -> None:
    """Run ``fn(0) .. fn(count - 1)`` with at most ``concurrency`` in flight; the first error cancels
    the rest and is raised."""
    indices = iter(range(count))

    async def worker() -> None:
        for i in indices:  # shared iterator: each index is taken by exactly one worker
            await fn(i)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, count))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["AzureBackend"]
