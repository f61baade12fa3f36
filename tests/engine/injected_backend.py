"""A backend for a scheme no registry knows (``mem://``), serving a directory: injected through
``Stream(backend=...)`` only. Importable by spawned DataLoader workers (module level)."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from astreaming.storage import ObjectInfo
from astreaming.storage.local import LocalBackend

PREFIX = "mem://ds"


class DirectoryBackend(LocalBackend):
    """``mem://ds/<name>`` is ``<root>/<name>``; every process that opens one leaves ``<calls>/<pid>``."""

    scheme = ("mem",)

    def __init__(self, *, root: str, calls: str, timeout: float = 60.0) -> None:
        super().__init__(timeout=timeout)
        self.root = Path(root)
        self.calls = Path(calls)

    def _local(self, url: str) -> str:
        assert url.startswith(PREFIX + "/"), url
        (self.calls / str(os.getpid())).touch()
        return str(self.root / url[len(PREFIX) + 1 :])

    async def read_bytes(self, url: str) -> bytes:
        return await super().read_bytes(self._local(url))

    async def download(self, url: str, dest: Path) -> int:
        return await super().download(self._local(url), dest)

    async def read_range(self, url: str, start: int, end: int) -> bytes:
        return await super().read_range(self._local(url), start, end)

    async def stat(self, url: str) -> ObjectInfo:
        return await super().stat(self._local(url))

    async def exists(self, url: str) -> bool:
        return await super().exists(self._local(url))

    def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        return super().list(self._local(url_prefix))


def factory(root: str, calls: str) -> Any:
    """What a test passes as ``Stream(backend=...)``: picklable for spawned workers."""
    return functools.partial(_make, root=root, calls=calls)


def _make(remote_root: str, *, timeout: float, root: str, calls: str) -> DirectoryBackend:
    assert remote_root == PREFIX, remote_root
    return DirectoryBackend(root=root, calls=calls, timeout=timeout)
