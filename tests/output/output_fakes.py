"""A scriptable storage backend for the uploader tests: a local directory behind a ``scripted://`` URL.

It stores objects like the local backend, but each upload can be delayed, made to fail (once or always)
and is logged, so tests can observe concurrency and ordering without timing the network. The script is
module state because :func:`astreaming.storage.backend_for` builds backends from a URL alone.
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
from astreaming.storage.registry import register_backend

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

    def log(self, what: str, name: str) -> None:
        with self.lock:
            self.events.append((what, name, time.monotonic()))


SCRIPT = Script()


def to_file(url: str) -> str:
    assert url.startswith(f"{SCHEME}://"), url
    return "file://" + url[len(SCHEME) + 3 :]


class ScriptedBackend(LocalBackend):
    scheme = (SCHEME,)

    async def upload(self, src: Path, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        SCRIPT.log("start", name)
        if SCRIPT.delay:
            await asyncio.sleep(SCRIPT.delay)
        gate = SCRIPT.gate
        if gate is not None:
            while not gate.is_set():  # the event is set from the test's thread
                await asyncio.sleep(0.005)
        once = SCRIPT.fail_once.pop(name, None)
        error = once or SCRIPT.fail.get(name)
        if error is not None:
            SCRIPT.log("fail", name)
            raise error(url)
        await super().upload(src, to_file(url))
        SCRIPT.log("end", name)

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


def install() -> Script:
    """Register the backend (idempotent) and reset the script."""
    global SCRIPT
    register_backend(SCHEME, ScriptedBackend)
    SCRIPT = Script()
    return SCRIPT
