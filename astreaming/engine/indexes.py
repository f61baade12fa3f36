"""Fetch and validate each stream's ``index.json`` once, keeping the local copy in step with the remote."""

from __future__ import annotations

import hashlib
from pathlib import Path

from astreaming.cache.paths import CacheDir
from astreaming.cache.versionpins import VersionPins
from astreaming.diskerrors import mapped_disk_errors
from astreaming.engine.origin import check_origin
from astreaming.errors import EmptyDatasetError, FormatError, IndexNotFound, ObjectChanged, ObjectNotFound
from astreaming.format.index import ShardEntry, parse_index, write_text_atomic
from astreaming.storage.base import Backend
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries
from astreaming.storage.urls import join, redact
from astreaming.stream import Stream

__all__ = ["check_index_unchanged", "index_url", "load_stream_index", "read_local_index"]

INDEX_NAME = "index.json"


def index_url(remote_root: str) -> str:
    """The URL of the index under a remote directory (any scheme, or a local path)."""
    return join(remote_root, INDEX_NAME)  # a SAS / presigned query stays at the end


async def load_stream_index(
    stream: Stream,
    backend: Backend | None,
    policy: RetryPolicy,
    stats: RetryStats,
) -> tuple[tuple[ShardEntry, ...], int, str]:
    """Load a stream's index: from its remote when it has one, else from its local directory.

    The remote index is authoritative: a cached copy that differs from it is replaced (mosaic trusted a
    local ``index.json`` forever, so a re-written remote dataset was read with a stale index).

    Returns:
        The parsed shard entries, the index's size in bytes and a digest of its bytes (what the versions
        of its shards are recorded under: :mod:`astreaming.cache.versionpins`).

    Raises:
        FormatError: the index is malformed (``IndexJSONError``: not JSON), or a stream has no samples
            (``EmptyDatasetError``).
        IndexNotFound: there is no index.json (remote, or local for a stream without remote).
        StorageError: the remote index could not be read (after retries).
    """
    remote_root = stream.remote_root
    if remote_root is None or backend is None:
        return read_local_index(stream)
    local_path = CacheDir(stream.local_root).index_path()
    check_origin(Path(stream.local_root), remote_root)  # before any file of it is trusted
    url = index_url(remote_root)
    source = redact(url)
    try:
        data = await with_retries(policy, lambda: backend.read_bytes(url), url=url, stats=stats, what="read")
    except ObjectNotFound as exc:
        raise IndexNotFound(f"{source}: the remote has no index.json ({exc})", url=exc.url) from exc
    entries = tuple(parse_index(data, source=source))
    check_origin(Path(stream.local_root), remote_root, record=True)  # before the cache is written
    if not local_path.exists() or local_path.read_bytes() != data:
        # Parsed first, so only a valid index replaces the cached copy.
        with mapped_disk_errors(local_path):  # read-only or full cache: CacheError naming the directory
            local_path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(local_path, data.decode("utf-8"))
    return _checked(entries, data, source)


def read_local_index(stream: Stream) -> tuple[tuple[ShardEntry, ...], int, str]:
    """Load the index of a stream without a remote from its local directory, as :func:`load_stream_index`
    does. Synchronous: nothing is awaited, so a local-only dataset is built without a thread or a loop.
    """
    local_path = CacheDir(stream.local_root).index_path()
    data = _read_local(local_path)
    source = str(local_path)
    return _checked(tuple(parse_index(data, source=source)), data, source)


def _checked(
    entries: tuple[ShardEntry, ...], data: bytes, source: str
) -> tuple[tuple[ShardEntry, ...], int, str]:
    if sum(e.samples for e in entries) == 0:
        raise EmptyDatasetError(f"{source}: the dataset has no samples")
    return entries, len(data), hashlib.sha256(data).hexdigest()[:32]


async def check_index_unchanged(
    remote_root: str,
    backend: Backend,
    policy: RetryPolicy,
    stats: RetryStats,
    digest: str,
    samples: int,
    pins: VersionPins,
) -> None:
    """Check that a stream's remote index is still the one the dataset was built from.

    A dataset reads its index once, when it is built; an epoch that starts after the index was written
    again would walk the old shard list over files that may be the new ones, and a rank built after the
    rewrite walks another list than a rank built before it (the two would not even agree on the
    number of batches). Called as each later epoch starts.

    An index can be tens of MB (100k shards), and every rank checks it every epoch: the object's size
    and version token (``stat``) are compared with those recorded in ``pins`` the last time its bytes
    were read and found equal, and the bytes are read again only when they differ (or the store reports
    no version). The stat comes before the read, so a rewrite between the two is still caught.

    Raises:
        ObjectChanged: the remote index differs (naming it, with the sample counts before and now).
        StorageError: the index could not be read (after retries).
    """
    url = index_url(remote_root)
    info = await with_retries(policy, lambda: backend.stat(url), url=url, stats=stats, what="stat")
    seen = f"{info.size} {info.etag}" if info.etag else None
    if seen is not None and pins.get(INDEX_NAME) == seen:
        return
    data = await with_retries(policy, lambda: backend.read_bytes(url), url=url, stats=stats, what="read")
    if hashlib.sha256(data).hexdigest()[:32] == digest:
        if seen is not None:
            pins.put(INDEX_NAME, seen)
        return
    try:
        now = f"{sum(e.samples for e in parse_index(data, source=redact(url)))} samples"
    except FormatError as e:
        now = f"not a valid index ({e})"
    raise ObjectChanged(
        f"{redact(url)}: index.json changed since this dataset read it ({samples} samples then, {now} "
        "now): every epoch and every rank of a job must read one version of a dataset; write the new "
        "version under another prefix, and build the dataset again to read it",
        url=redact(url),
    )


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IndexNotFound(
            f"{path}: no index.json in the local directory of a stream without a remote", url=str(path)
        ) from None
