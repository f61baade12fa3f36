"""Local-backend and PartFile specifics: cancellation mid-copy, write errors, relative paths."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from astreaming.errors import CacheError, ObjectNotFound, TransientStorageError
from astreaming.storage import local as local_mod
from astreaming.storage import partfile as partfile_mod
from astreaming.storage.base import check_length
from astreaming.storage.local import LocalBackend
from astreaming.storage.partfile import PartFile

pytestmark = pytest.mark.timeout(30)


async def test_local_cancel_midway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))
    dest_dir = tmp_path / "cache"
    in_thread = threading.Event()
    real_check = local_mod.check_length

    def slow_check(url: str, got: int, expected: int | None) -> None:
        in_thread.set()
        time.sleep(0.3)  # the copy thread is busy when the cancellation arrives
        real_check(url, got, expected)

    monkeypatch.setattr(local_mod, "check_length", slow_check)
    async with LocalBackend() as b:
        task = asyncio.ensure_future(b.download(str(src), dest_dir / "dst.bin"))
        while not in_thread.is_set():
            await asyncio.sleep(0.01)
        assert [p.suffix for p in dest_dir.iterdir()] == [".part"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # download() returned only after the thread stopped and removed its .part; nothing was published.
    assert list(dest_dir.iterdir()) == []


async def test_partfile_disk_full_is_cache_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(partfile_mod, "_write_all", full)
    dest = tmp_path / "x.bin"
    with pytest.raises(CacheError, match="disk full"):
        async with PartFile(dest, "gs://b/x.bin", buffer_size=10) as part:
            await part.write(b"0123456789abc")
    assert list(tmp_path.iterdir()) == []


async def test_partfile_short_body_is_transient(tmp_path: Path) -> None:
    dest = tmp_path / "x.bin"
    dest.write_bytes(b"old")
    with pytest.raises(TransientStorageError, match="truncated"):
        async with PartFile(dest, "gs://b/x.bin") as part:
            await part.write(b"abc")
            await part.commit(expected=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"] and dest.read_bytes() == b"old"


async def test_unwritable_destination_is_cache_error(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    blocker = tmp_path / "file-not-dir"
    blocker.write_bytes(b"")
    async with LocalBackend() as b:
        with pytest.raises(CacheError, match="file-not-dir"):
            await b.download(str(src), blocker / "dst.bin")


async def test_relative_paths_and_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("ds/sub").mkdir(parents=True)
    Path("ds/a.mds").write_bytes(b"a")
    Path("ds/sub/b.mds").write_bytes(b"bb")
    async with LocalBackend() as b:
        assert [x.url async for x in b.list("ds/")] == ["ds/a.mds", "ds/sub/b.mds"]
        assert [x.url async for x in b.list("ds/a")] == ["ds/a.mds"]
        with pytest.raises(ObjectNotFound):
            await b.stat("ds/sub")  # a directory is not an object
        assert not await b.exists("ds/sub")
        assert await b.read_bytes("ds/sub/b.mds") == b"bb"


def test_check_length() -> None:
    check_length("u", 5, 5)
    check_length("u", 5, None)
    with pytest.raises(TransientStorageError, match="4 bytes but 5"):
        check_length("https://u:p@h/x", 4, 5)
