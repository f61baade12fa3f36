"""Local servers for the reliability tests, each on its own thread and event loop (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

#: What to do with a file name: "serve", "stall" (never answer) or "missing" (404).
Rule = Callable[[str], str]
Cleanup = Callable[[], Awaitable[None]]


class LoopServer:
    """Runs :meth:`_serve` on a private loop in a daemon thread; a sync context manager."""

    def __init__(self) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._ready = threading.Event()

    async def _serve(self) -> Cleanup:
        """Start serving, set :attr:`url`, return the coroutine function that stops it."""
        raise NotImplementedError(f"{type(self).__name__} must define _serve (each test server does)")

    async def _stopping(self) -> None:
        """Called on the loop before it stops (e.g. to release stalled requests)."""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        cleanup = self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(cleanup())
        self._loop.close()

    def __enter__(self) -> Any:
        self._thread.start()
        assert self._ready.wait(20), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stopping(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def serve_app(app: web.Application, context: ssl.SSLContext | None = None) -> tuple[str, Cleanup]:
    """Serve ``app`` on 127.0.0.1 and a free port: its base URL and its cleanup."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    scheme = "https" if context is not None else "http"
    return f"{scheme}://127.0.0.1:{runner.addresses[0][1]}", runner.cleanup


class RuleServer(LoopServer):
    """Serves ``root`` over http://127.0.0.1, answering each file as ``rule(name)`` says."""

    def __init__(self, root: Path, rule: Rule) -> None:
        super().__init__()
        self.root = root
        self.rule = rule
        self._release: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = self.root / request.path.lstrip("/")
        action = self.rule(path.name)
        if action == "stall":
            assert self._release is not None
            await self._release.wait()  # until the server stops
        if action != "serve" or not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    async def _serve(self) -> Cleanup:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.url, cleanup = await serve_app(app)
        return cleanup

    async def _stopping(self) -> None:
        if self._release is not None:
            self._release.set()


def split_by_worker(index: dict[str, Any], batch_size: int, *, fail: bool = True) -> Rule:
    """For two DataLoader workers taking turns by batch (no shuffle): the shards of the first batch are
    served; shards starting in a later batch of worker 0 stall, those in worker 1's are missing. So the
    first batch arrives, then worker 1's error, while worker 0 is left waiting for a shard (torch
    delivers batches in order: an error is seen only after every batch before it). With ``fail=False``
    worker 1's shards stall too."""
    rules: dict[str, str] = {}
    first = 0
    for shard in index["shards"]:
        count = shard["samples"]
        if first < batch_size or count == 0:
            action = "serve"
        else:
            action = "stall" if (first // batch_size) % 2 == 0 or not fail else "missing"
        for key in ("raw_data", "zip_data"):
            if shard[key] is not None:
                rules[shard[key]["basename"]] = action
        first += count

    def rule(name: str) -> str:
        return rules.get(name, "serve")

    return rule
