"""The one async interface every storage backend implements.

A backend is an async context manager created *inside* the event loop that uses it: network clients
(aiohttp sessions, aiobotocore clients, gcloud-aio sessions) are opened lazily on first use or in
``__aenter__`` and closed in ``aclose``/``__aexit__``, so a backend object can be built before a fork
and pickled into a DataLoader worker without carrying live sockets.

Contract shared by every backend (the conformance suite in ``tests/storage`` checks it):

- URLs are full URLs (``gs://bucket/key``, ``/abs/path``, ``file:///abs/path``, ...); every method takes
  the URL of one object, except :meth:`Backend.list`, which takes a prefix.
- Errors are mapped once, at the backend boundary, to :mod:`astreaming.errors`: a missing object is
  :class:`~astreaming.errors.ObjectNotFound`, 401/403 is :class:`~astreaming.errors.PermissionDenied`
  (neither is retried); 5xx, 429 (``retry_after`` set from ``Retry-After``), connection resets,
  timeouts and bodies shorter than announced are :class:`~astreaming.errors.TransientStorageError`.
  Messages and ``error.url`` carry the URL with credentials redacted (:func:`astreaming.storage.urls.redact`).
- A backend performs ONE attempt per call. Retries and the per-attempt ``download_timeout`` live in
  :mod:`astreaming.storage.retry` and wrap calls from the outside, so every backend gets them alike.
- :meth:`Backend.download` streams into a ``.part`` file next to ``dest`` and renames it into place
  atomically; on any failure (including cancellation) the ``.part`` file is removed and ``dest`` is
  left untouched.
"""

from __future__ import annotations

import abc
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from astreaming.errors import ConfigError, TransientStorageError
from astreaming.storage.urls import redact

_B = TypeVar("_B", bound="Backend")

#: Default chunk size for streamed downloads and reads of local files.
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    """What :meth:`Backend.stat` and :meth:`Backend.list` report about one object.

    Attributes:
        url: Full URL of the object, in the same scheme as the request (credentials not redacted, so it
            can be passed back to the backend).
        size: Size in bytes.
        etag: ETag, generation or another version token the store reports; ``None`` if it has none.
    """

    url: str
    size: int
    etag: str | None = None


@dataclass
class BackendStats:
    """Counters a backend keeps for the engine's statistics.

    Attributes:
        requests: Requests issued (attempts, including failed ones).
        bytes_downloaded: Bytes written by :meth:`Backend.download` plus bytes returned by reads.
        bytes_uploaded: Bytes sent by :meth:`Backend.upload`.
        errors: Requests that ended in a :class:`~astreaming.errors.StorageError`.
    """

    requests: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    errors: int = 0


class Backend(abc.ABC):
    """Async storage backend: read, download, range-read, stat, list, upload, exists, delete.

    Subclasses set :attr:`scheme` (the URL schemes they serve) and implement the abstract methods.
    They are created through :func:`astreaming.storage.registry.backend_for` and used as::

        async with backend_for("gs://bucket/data", timeout=60) as b:
            await b.download("gs://bucket/data/shard.00000.mds", Path("/cache/shard.00000.mds"))

    Args:
        timeout: Seconds a single request may take end to end (the per-attempt ``download_timeout``).
            The retry wrapper enforces it as well; backends pass it to their client as the socket
            timeout so a stalled connection is noticed even outside the wrapper.
    """

    scheme: ClassVar[tuple[str, ...]] = ()
    #: Reads go to a local filesystem: no round trips, so byte ranges and parallel parts save nothing.
    is_local_filesystem: ClassVar[bool] = False

    def __init__(self, *, timeout: float = 60.0) -> None:
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.stats = BackendStats()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self: _B) -> _B:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close network clients. Idempotent; the backend must not be used afterwards."""
        self._closed = True

    #: Attributes holding a credential read from the environment (set by subclasses): a pickle leaves
    #: them out and the copy reads the environment again (a spawned worker inherits it), so a secret
    #: the user kept in the environment never lands in a pickle.
    _env_secrets: frozenset[str] = frozenset()

    def __getstate__(self) -> dict[str, Any]:
        # Live clients never cross a pickle boundary (spawned DataLoader workers): subclasses keep them
        # in attributes whose names start with ``_client`` and the copy recreates them lazily in its own
        # loop. A copy starts open: closing concerns this process's connections, which it never shares.
        state = {k: (None if k.startswith("_client") else v) for k, v in self.__dict__.items()}
        for name in self._env_secrets:
            state[name] = None
        state["_closed"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._env_secrets:
            self._reload_env_secrets()

    def _reload_env_secrets(self) -> None:
        """Read the credentials named in ``_env_secrets`` from the environment again (after unpickling)."""
        return  # backends that set _env_secrets override this

    def statistics(self) -> BackendStats:
        """A snapshot of this backend's counters (anyio's ``statistics()`` convention)."""
        return replace(self.stats)

    # -- operations --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def read_bytes(self, url: str) -> bytes:
        """Read a whole (small) object, such as ``index.json``, into memory."""

    @abc.abstractmethod
    async def download(self, url: str, dest: Path) -> int:
        """Stream an object to ``dest`` through a ``.part`` file and an atomic rename.

        Args:
            url: The object to fetch.
            dest: Local destination path. Its parent directory is created if missing.

        Returns:
            The number of bytes written.

        Raises:
            ObjectNotFound: The object does not exist; ``dest`` is untouched.
            TransientStorageError: Network failure, timeout or a body shorter than announced; no
                ``.part`` file is left behind and ``dest`` is untouched.
        """

    @abc.abstractmethod
    async def read_range(self, url: str, start: int, end: int) -> bytes:
        """Read bytes ``[start, end)`` of an object. ``end`` past the object's size is clamped."""

    async def read_range_into(
        self, url: str, start: int, end: int, sink: Callable[[bytes], Awaitable[None]]
    ) -> int:
        """Stream bytes ``[start, end)`` of an object into ``sink``, chunk by chunk, in order.

        A large range then never sits in memory whole. This default reads the range with
        :meth:`read_range` and hands it over at once; backends that can stream override it.

        Returns:
            The bytes handed to ``sink`` (fewer than asked where ``end`` is past the object's end).

        Raises:
            TransientStorageError: The body was shorter than announced (``sink`` may have received
                part of it: a retry writes the range again).
        """
        data = await self.read_range(url, start, end)
        if data:
            await sink(data)
        return len(data)

    @abc.abstractmethod
    async def stat(self, url: str) -> ObjectInfo:
        """Return the size and version token of an object; ObjectNotFound if it does not exist."""

    @abc.abstractmethod
    def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        """Iterate over every object whose URL starts with ``url_prefix`` (all pages), in key order.

        This is a plain string prefix, as in object stores: ``gs://b/data/sh`` matches
        ``gs://b/data/shard.0.mds``. A missing prefix yields nothing (no error).
        """

    @abc.abstractmethod
    async def upload(self, src: Path, url: str) -> None:
        """Upload a local file to ``url`` (multipart/resumable when large), replacing any existing object."""

    @abc.abstractmethod
    async def exists(self, url: str) -> bool:
        """Whether the object exists (False on ObjectNotFound; other errors raise)."""

    @abc.abstractmethod
    async def delete(self, url: str) -> None:
        """Delete an object; ObjectNotFound if it does not exist."""


async def collect_range(backend: Backend, url: str, start: int, end: int) -> bytes:
    """:meth:`Backend.read_range` of a backend that streams ranges with :meth:`Backend.read_range_into`."""
    chunks: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        chunks.append(chunk)

    await backend.read_range_into(url, start, end, keep)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def part_path(dest: Path) -> Path:
    """A unique temporary path next to ``dest``, for a download in progress.

    Unique per call (pid + random token) so two processes downloading the same object into one cache
    never write the same ``.part`` file; the final rename is atomic and the last writer wins with
    identical bytes.
    """
    return dest.with_name(f"{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")


def discard(path: Path) -> None:
    """Remove ``path`` if it exists (cleanup of a failed ``.part``); never raises for a missing file."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.unlink()


def check_length(url: str, got: int, expected: int | None) -> None:
    """Raise TransientStorageError when a body is shorter (or longer) than the announced length."""
    if expected is not None and got != expected:
        raise TransientStorageError(
            f"{redact(url)}: body has {got} bytes but {expected} were announced (truncated transfer)",
            url=redact(url),
        )


def check_range(url: str, start: int, end: int) -> None:
    """Validate a ``[start, end)`` byte range argument."""
    if start < 0 or end < start:
        raise ConfigError(f"invalid byte range [{start}, {end}) for {redact(url)}")


__all__ = [
    "CHUNK_SIZE",
    "Backend",
    "BackendStats",
    "ObjectInfo",
    "check_length",
    "check_range",
    "collect_range",
    "discard",
    "part_path",
]
