"""Fixtures for the fault-proxy tests: a small aiohttp upstream server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

BLOB_SIZE = 256 * 1024


@dataclass
class Upstream:
    """An upstream HTTP server with known content, counting the requests it receives."""

    url: str
    blob: bytes
    requests: list[str] = field(default_factory=list)


def _make_app(root: Path, upstream: Upstream) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        upstream.requests.append(f"{request.method} {request.path_qs}")
        return await handler(request)

    async def echo(request: web.Request) -> web.Response:
        # Reports what arrived: the proxy must forward method, query, headers and body unchanged.
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": {k: v for k, v in request.headers.items()},
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        # A body without Content-Length, streamed in pieces.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(upstream.blob), 8192):
            await response.write(upstream.blob[i : i + 8192])
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(upstream.url + "/files/blob.bin")

    app = web.Application(middlewares=[count], client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/redirect", redirect)
    app.router.add_static("/files", root)
    return app


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    """A static-file + echo server on a free port; ``/files/blob.bin`` holds :data:`BLOB_SIZE` bytes."""
    blob = random.Random(7).randbytes(BLOB_SIZE)
    (tmp_path / "blob.bin").write_bytes(blob)
    (tmp_path / "small.txt").write_bytes(b"hello proxy\n")
    server = Upstream(url="", blob=blob)
    runner = web.AppRunner(_make_app(tmp_path, server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
