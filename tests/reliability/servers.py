"""A local HTTP server for shutdown tests: serves a dataset directory, stalls or refuses chosen files."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

#: What to do with a file name: "serve", "stall" (never answer) or "missing" (404).
Rule = Callable[[str], str]


class RuleServer:
    """Serves ``root`` over http://127.0.0.1, answering each file as ``rule(name)`` says."""

    def __init__(self, root: Path, rule: Rule) -> None:
        self.root = root
        self.rule = rule
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._release = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="rule-server", daemon=True)
        self._ready = threading.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = self.root / request.path.lstrip("/")
        action = self.rule(path.name)
        if action == "stall":
            await self._release.wait()  # until the server stops
        if action != "serve" or not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def setup() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            return runner

        runner = self._loop.run_until_complete(setup())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> RuleServer:
        self._thread.start()
        assert self._ready.wait(20), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._release.set)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


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
