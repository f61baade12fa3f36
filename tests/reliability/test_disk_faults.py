"""A full disk or a read-only cache is a CacheError naming the file or directory, and leaves nothing
half-written behind that a later run would trust (issue 10: environment faults)."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import astreaming.format.compression as compression_module
from astreaming import StreamingDataset
from astreaming.errors import CacheError

from .conftest import MakeDataset, read_index

_real_open = builtins.open


class _FillingFile:
    """A file opened for writing whose writes fail with ENOSPC once ``room`` bytes were written."""

    def __init__(self, inner: Any, room: int) -> None:
        self._inner = inner
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        written: int = self._inner.write(data)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


def _ids(ds: StreamingDataset) -> list[int]:
    return [int(sample["id"]) for sample in ds]


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if ".tmp" in p.name or p.name.endswith((".part", ".lock")))


def test_disk_full_while_decompressing_names_the_file(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset(compression="zstd", size_limit=2000)
    cache = tmp_path / "cache"

    def filling_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        inner = _real_open(file, mode, *args, **kwargs)
        return _FillingFile(inner, room=100) if "w" in mode else inner

    # The decompressor's output file fills up after 100 bytes (as a 20 MiB tmpfs would, sooner).
    monkeypatch.setattr(compression_module, "open", filling_open, raising=False)
    with pytest.raises(CacheError, match="disk full while writing") as info:
        _ids(StreamingDataset(remote=str(remote), local=str(cache), batch_size=1))
    assert str(cache / "shard.00000.mds") in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert _leftovers(cache) == []
    assert not (cache / "shard.00000.mds").exists()

    # Room again: the next run completes with every sample, nothing half-written was trusted.
    monkeypatch.undo()
    assert _ids(StreamingDataset(remote=str(remote), local=str(cache), batch_size=1)) == list(range(60))


def test_file_size_limit_while_decompressing_is_a_cache_error(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    """A real kernel write failure, no root needed: RLIMIT_FSIZE makes writes past 4 KiB fail (EFBIG)."""
    remote = make_dataset(num_samples=400, compression="zstd", size_limit=1 << 20)
    assert max(p.stat().st_size for p in remote.glob("*.zstd")) < 4096  # the download fits...
    assert read_index(remote)["shards"][0]["raw_data"]["bytes"] > 4096  # ... the decompressed shard not
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from astreaming import StreamingDataset
        from astreaming.errors import CacheError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            list(StreamingDataset(remote={str(remote)!r}, local={str(tmp_path / "cache")!r}, batch_size=1))
        except CacheError as exc:
            print("CacheError:", exc)
            sys.exit(0)
        sys.exit(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(tmp_path / "cache" / "shard.00000.mds") in done.stdout
    assert _leftovers(tmp_path / "cache") == []


def _read_only_under(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every write under ``root`` fail as on a read-only mount (EROFS; EEXIST wins for mkdir)."""

    def inside(path: Any) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(os.fsdecode(path)).resolve().is_relative_to(root)

    real_mkdir, real_os_open = os.mkdir, os.open

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if inside(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        real_mkdir(path, *args, **kwargs)

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if inside(file) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), file)
        return _real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)


def test_read_only_cache_directory_names_the_directory(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset()
    mount = tmp_path / "ro"
    mount.mkdir()
    _read_only_under(mount.resolve(), monkeypatch)
    with pytest.raises(CacheError, match="read-only file system") as info:
        StreamingDataset(remote=str(remote), local=str(mount / "cache"), batch_size=1)
    assert f"cache directory {mount / 'cache'}" in str(info.value)


def test_read_only_cache_with_an_index_already_there(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset()
    cache = tmp_path / "ro" / "cache"
    cache.mkdir(parents=True)
    (cache / "index.json").write_bytes((remote / "index.json").read_bytes())
    _read_only_under(cache.parent.resolve(), monkeypatch)
    ds = StreamingDataset(remote=str(remote), local=str(cache), batch_size=1)  # nothing to write yet
    with pytest.raises(CacheError, match="read-only file system") as info:
        _ids(ds)
    assert f"cache directory {cache}" in str(info.value)
    ds.close()
