"""Local paths and ``file://`` URLs, with the same semantics as the cloud backends.

Every blocking call runs in a worker thread. A download copies in chunks inside one thread call that
checks a cancel flag between chunks: on cancellation the coroutine waits for the thread to stop and
remove its ``.part`` file, so nothing is written after ``download`` returns or raises.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from astreaming.crashpoints import crash_point
from astreaming.errors import StorageError
from astreaming.storage.base import (
    CHUNK_SIZE,
    Backend,
    ObjectInfo,
    check_length,
    check_range,
    discard,
    part_path,
)
from astreaming.storage.oserrors import map_os_error
from astreaming.storage.partfile import settle, write_error
from astreaming.storage.urls import local_path, scheme_of

T = TypeVar("T")


class _Cancelled(Exception):
    """Raised inside the copy thread when the awaiting coroutine was cancelled."""


def _etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


def _copy(src: str, dest: Path, url: str, cancel: threading.Event) -> int:
    """Copy ``src`` to ``dest`` through a ``.part`` file; runs in a worker thread."""
    part = part_path(dest)
    try:
        with open(src, "rb") as fin:
            expected = os.fstat(fin.fileno()).st_size
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fout = open(part, "xb")  # noqa: SIM115 - closed below; errors map to CacheError
            except OSError as e:
                raise write_error(dest, e) from e
            with fout:
                n = 0
                while True:
                    if cancel.is_set():
                        raise _Cancelled
                    chunk = fin.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    try:
                        fout.write(chunk)
                    except OSError as e:
                        raise write_error(dest, e) from e
                    n += len(chunk)
        # A file that shrank while we copied is a short body: retryable, never published.
        check_length(url, n, expected)
        crash_point("download.part_written")
        if cancel.is_set():
            raise _Cancelled
        try:
            os.replace(part, dest)
        except OSError as e:
            raise write_error(dest, e) from e
        return n
    except BaseException:
        discard(part)
        raise


class LocalBackend(Backend):
    """Backend for plain paths (``/data/ds``, ``data/ds``) and ``file:///data/ds``.

    Listing returns URLs in the form they were asked for (a plain path or ``file://``).
    """

    scheme = ("", "file")
    is_local_filesystem = True

    async def _thread(self, fn: Callable[..., T], url: str, *args: object) -> T:
        self.stats.requests += 1
        try:
            return await asyncio.to_thread(fn, *args)
        except StorageError:
            self.stats.errors += 1
            raise
        except OSError as e:
            self.stats.errors += 1
            raise map_os_error(e, url) from e

    async def read_bytes(self, url: str) -> bytes:
        data = await self._thread(Path(local_path(url)).read_bytes, url)
        self.stats.bytes_downloaded += len(data)
        return data

    async def download(self, url: str, dest: Path) -> int:
        cancel = threading.Event()
        self.stats.requests += 1
        fut = asyncio.get_running_loop().run_in_executor(
            None, _copy, local_path(url), Path(dest), url, cancel
        )
        try:
            # On cancellation, stop the thread at the next chunk and wait until it removed its .part.
            n = await settle(fut, on_cancel=cancel.set)
        except StorageError:  # first: ObjectNotFound and PermissionDenied are OSErrors too
            self.stats.errors += 1
            raise
        except OSError as e:
            self.stats.errors += 1
            raise map_os_error(e, url) from e
        self.stats.bytes_downloaded += n
        return n

    async def read_range(self, url: str, start: int, end: int) -> bytes:
        check_range(url, start, end)

        def read() -> bytes:
            with open(local_path(url), "rb") as f:
                f.seek(start)
                return f.read(end - start)

        data = await self._thread(read, url)
        self.stats.bytes_downloaded += len(data)
        return data

    async def stat(self, url: str) -> ObjectInfo:
        def do() -> ObjectInfo:
            st = os.stat(local_path(url))
            if not os.path.isfile(local_path(url)):
                raise IsADirectoryError(21, "is a directory")
            return ObjectInfo(url=url, size=st.st_size, etag=_etag(st))

        return await self._thread(do, url)

    async def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        prefix = local_path(url_prefix)
        as_file_url = scheme_of(url_prefix) == "file"

        def walk() -> list[tuple[str, int, str]]:
            # Object-store semantics: a plain string prefix, so walk the deepest directory that
            # contains every match and keep the files whose path starts with the prefix.
            root = prefix if prefix.endswith(os.sep) else (os.path.dirname(prefix) or ".")
            found = []
            for dirpath, dirnames, filenames in os.walk(root):
                keep = []
                for d in dirnames:
                    full = os.path.join(dirpath, d) + os.sep
                    if full.startswith(prefix) or prefix.startswith(full):
                        keep.append(d)
                dirnames[:] = keep
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    if dirpath == "." and not prefix.startswith("./"):
                        full = name
                    if full.startswith(prefix):
                        try:
                            st = os.stat(full)
                        except FileNotFoundError:
                            continue  # removed while we walked
                        found.append((full, st.st_size, _etag(st)))
            found.sort()
            return found

        for path, size, etag in await self._thread(walk, url_prefix):
            yield ObjectInfo(url=f"file://{path}" if as_file_url else path, size=size, etag=etag)

    async def upload(self, src: Path, url: str) -> None:
        # Same atomic publish as a download: readers of the target never see a partial file.
        n = await self.download(str(src), Path(local_path(url)))
        self.stats.bytes_downloaded -= n
        self.stats.bytes_uploaded += n

    async def exists(self, url: str) -> bool:
        return await self._thread(os.path.isfile, url, local_path(url))

    async def delete(self, url: str) -> None:
        await self._thread(os.unlink, url, local_path(url))


__all__ = ["LocalBackend"]
