"""Where conversion sources read from: local files, or objects behind any storage backend.

Sources see paths (a local path, or a URL) and use four operations: what is at a path, the files below a
directory, a file's size, and a seekable binary reader. For a URL, each read is a range request through
the scheme's async backend on the process's astreaming loop thread (one backend per process, opened on
first use and closed by :meth:`RemoteFS.close`), so JSONL and CSV stream line by line, Parquet reads its
footer and row groups, and an image is one request; nothing is staged on disk. A ``RemoteFS`` pickles
without its backend, so spawned convert workers open their own.

Files below a directory are listed in ``os.walk`` order (a directory's files before its sub-directories,
each sorted by name), locally and remotely alike: the same tree gives the same dataset from either.
"""

from __future__ import annotations

import io
import os
from collections.abc import Coroutine
from typing import Any, BinaryIO, Literal, TypeVar, cast

from astreaming.errors import ConfigError, ObjectNotFound
from astreaming.fetch.loop_thread import get_loop_thread
from astreaming.format.writer import is_remote_out
from astreaming.storage import Backend, RetryPolicy, backend_for, join, redact, with_retries
from astreaming.storage.urls import scheme_of

__all__ = ["LocalFS", "RemoteFS", "SourceFS", "source_fs", "walk_key"]

_T = TypeVar("_T")
Kind = Literal["file", "dir"] | None

#: Bytes buffered per open remote file (each refill is one range request).
READ_BUFFER = 4 << 20


def walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    """Sort key of a relative path in ``os.walk`` order: files of a directory before its sub-directories."""
    parts = rel.split("/")
    return (*((1, p) for p in parts[:-1]), (0, parts[-1]))


def _visible(rel: str) -> bool:
    return not any(part.startswith(".") for part in rel.split("/"))


class SourceFS:
    """Local files (the base class) or, in :class:`RemoteFS`, objects behind a storage backend."""

    def kind(self, path: str) -> Kind:
        """``"file"``, ``"dir"``, or None when nothing is at ``path``."""
        if os.path.isfile(path):
            return "file"
        return "dir" if os.path.isdir(path) else None

    def files_below(self, root: str) -> list[str]:
        """Every visible file below the directory ``root``, as ``/``-separated relative paths, walk order."""
        out = []
        for dirpath, _, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            out += [f if rel == "." else f"{rel}/{f}" for f in filenames]
        return sorted(filter(_visible, out), key=walk_key)

    def dirs(self, root: str) -> list[str]:
        """The visible sub-directories of ``root``, sorted."""
        return sorted(d for d in os.listdir(root) if _visible(d) and os.path.isdir(os.path.join(root, d)))

    def join(self, root: str, rel: str) -> str:
        """``root/rel``."""
        return os.path.join(root, *rel.split("/"))

    def size(self, path: str) -> int:
        """The size of the file at ``path``."""
        return os.path.getsize(path)

    def open(self, path: str) -> BinaryIO:
        """A seekable binary reader of the file at ``path``."""
        return open(path, "rb")

    def read_bytes(self, path: str) -> bytes:
        """The whole file at ``path`` (a small one: an image)."""
        with open(path, "rb") as f:
            return f.read()

    def name(self, path: str) -> str:
        """``path`` as shown in messages (credentials redacted)."""
        return path

    def close(self) -> None:
        """Release clients (nothing to release locally)."""


LocalFS = SourceFS


class RemoteFS(SourceFS):
    """Objects under any storage URL, read by range requests (see the module docstring).

    Args:
        url: Any URL of the store (selects the backend).
        timeout: Seconds per request attempt.
        retries: Retries of a failed request.
    """

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 2) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self._backend: Backend | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_backend": None}  # each process opens its own client

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return get_loop_thread().call(coro)

    async def _get(self) -> Backend:
        if self._backend is None:
            self._backend = await backend_for(self.url, timeout=self.timeout).__aenter__()
        return self._backend

    def _retried(self, url: str, what: str, op: Any) -> Any:
        policy = RetryPolicy.from_download_retry(download_retry=self.retries, download_timeout=self.timeout)

        async def go() -> Any:
            backend = await self._get()
            return await with_retries(policy, lambda: op(backend), url=url, what=what)

        return self._call(go())

    def kind(self, path: str) -> Kind:
        if scheme_of(path) in ("http", "https"):
            return "file" if self._exists(path) else None  # HTTP has no listing: always one object
        if self._list(path.rstrip("/") + "/", limit=1):
            return "dir"
        return "file" if self._exists(path) else None

    def _exists(self, path: str) -> bool:
        try:
            self.size(path)
        except ObjectNotFound:
            return False
        return True

    def _list(self, prefix: str, limit: int | None = None) -> list[str]:
        async def go() -> list[str]:
            backend = await self._get()
            found = []
            async for info in backend.list(prefix):
                found.append(info.url)
                if limit is not None and len(found) >= limit:
                    break
            return found

        return self._call(go())

    def files_below(self, root: str) -> list[str]:
        prefix = root.rstrip("/") + "/"
        rels = [url[len(prefix) :] for url in self._list(prefix) if url.startswith(prefix)]
        # Object stores have no directories; a key ending in "/" is a folder marker, not a file.
        return sorted((r for r in rels if r and not r.endswith("/") and _visible(r)), key=walk_key)

    def dirs(self, root: str) -> list[str]:
        # No empty directories in an object store: the folders are the first parts of the keys.
        return sorted({rel.split("/", 1)[0] for rel in self.files_below(root) if "/" in rel})

    def join(self, root: str, rel: str) -> str:
        return join(root, rel)

    def size(self, path: str) -> int:
        return int(self._retried(path, "stat", lambda b: b.stat(path)).size)

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``path``."""
        return cast(bytes, self._retried(path, "read", lambda b: b.read_range(path, start, end)))

    def open(self, path: str) -> BinaryIO:
        return cast(BinaryIO, io.BufferedReader(_RangeFile(self, path, self.size(path)), READ_BUFFER))

    def read_bytes(self, path: str) -> bytes:
        return cast(bytes, self._retried(path, "read", lambda b: b.read_bytes(path)))

    def name(self, path: str) -> str:
        return redact(path)

    def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            self._call(backend.aclose())


class _RangeFile(io.RawIOBase):
    """A seekable read-only file over range requests (wrapped in a BufferedReader by RemoteFS.open)."""

    def __init__(self, fs: RemoteFS, path: str, size: int) -> None:
        super().__init__()
        self._fs = fs
        self._path = path
        self._size = size
        self._pos = 0
        self.name = fs.name(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        data = self._fs.read_range(self._path, self._pos, end)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def size(self) -> int:
        """The object's size (pyarrow asks file objects for it)."""
        return self._size


def source_fs(src: str) -> SourceFS:
    """The file system ``src`` lives on: local for paths and ``file://``, else a :class:`RemoteFS`."""
    if is_remote_out(src):
        return RemoteFS(src)
    if scheme_of(src) not in ("", "file"):
        raise ConfigError(f"convert: cannot read {redact(src)}")
    return SourceFS()
