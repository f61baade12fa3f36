"""A scriptable storage backend for the uploader tests: a local directory behind a ``scripted://`` URL.

It stores objects like the local backend, but each upload can be delayed, made to fail (once or always)
and is logged, so tests can observe concurrency and ordering without timing the network. No registry
knows the ``scripted`` scheme: tests inject the backend (``backend=script.backend()``), as httpx tests
inject a transport, so the script belongs to the test that made it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from astreaming.storage.base import ObjectInfo
from astreaming.storage.local import LocalBackend

SCHEME = "scripted"


@dataclass
class Script:
    """What the scripted backend does on upload."""

    delay: float = 0.0  # seconds each upload takes
    gate: threading.Event | None = None  # when set, uploads wait for it (no clock involved)
    fail: dict[str, Callable[[str], BaseException]] = field(default_factory=dict)  # basename -> error, always
    fail_once: dict[str, Callable[[str], BaseException]] = field(default_factory=dict)  # first attempt only
    events: list[tuple[str, str, float]] = field(default_factory=list)  # (start|end|fail, basename, time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    backends: list[ScriptedBackend] = field(default_factory=list)  # every backend made, to check closing

    def log(self, what: str, name: str) -> None:
        with self.lock:
            self.events.append((what, name, time.monotonic()))

    def backend(self) -> ScriptedBackend:
        """A new backend following this script (each writer or call owns, opens and closes its own)."""
        made = ScriptedBackend(self)
        self.backends.append(made)
        return made


def to_file(url: str) -> str:
    assert url.startswith(f"{SCHEME}://"), url
    return "file://" + url[len(SCHEME) + 3 :]


class ScriptedBackend(LocalBackend):
    scheme = (SCHEME,)

    def __init__(self, script: Script, *, timeout: float = 60.0) -> None:
        super().__init__(timeout=timeout)
        self.script = script
        self.opened = 0  # __aenter__ calls: the owner opens it once

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> ScriptedBackend:
        self.opened += 1
        return self

    async def upload(self, src: Path, url: str) -> None:
        script = self.script
        name = url.rsplit("/", 1)[-1]
        script.log("start", name)
        if script.delay:
            await asyncio.sleep(script.delay)
        gate = script.gate
        if gate is not None:
            while not gate.is_set():  # the event is set from the test's thread
                await asyncio.sleep(0.005)
        once = script.fail_once.pop(name, None)
        error = once or script.fail.get(name)
        if error is not None:
            script.log("fail", name)
            raise error(url)
        await super().upload(src, to_file(url))
        script.log("end", name)

    async def list(self, url_prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in super().list(to_file(url_prefix)):
            # Report URLs in the scheme that was asked for, as every real backend does.
            yield ObjectInfo(f"{SCHEME}://{info.url[len('file://') :]}", info.size, info.etag)

    async def delete(self, url: str) -> None:
        await super().delete(to_file(url))

    async def exists(self, url: str) -> bool:
        return await super().exists(to_file(url))

    async def read_bytes(self, url: str) -> bytes:
        return await super().read_bytes(to_file(url))

    async def download(self, url: str, dest: Path) -> int:
        # LocalBackend.upload copies through download() with a plain source path: only map our URLs.
        return await super().download(to_file(url) if url.startswith(f"{SCHEME}://") else url, dest)
