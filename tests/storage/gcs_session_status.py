"""Answers GCS's resumable-session status query in front of fake-gcs-server, which lacks it.

GCS answers ``PUT <session>`` with ``Content-Range: bytes */SIZE`` and no body with 308 and
``Range: bytes=0-LAST`` (the bytes it committed) while the upload is incomplete. fake-gcs-server takes
that request for the last chunk and finalizes the object with what it has. ``SessionStatus`` forwards
every request to the upstream untouched, remembers what each session committed (the ``Range`` of the
upstream's 308 answers) and the object a finished session stored, and answers the status query itself,
as GCS documents (308 and the committed range; 200 and the object once finished). It counts the queries,
and can answer chunks as a session that takes none of them.
"""

from __future__ import annotations

import asyncio
import re
from types import TracebackType

import aiohttp
from aiohttp import web

_QUERY = re.compile(r"bytes \*/(\d+)")
_HOP = frozenset({"host", "connection", "content-length", "transfer-encoding", "keep-alive"})


class SessionStatus:
    """A forwarder to ``upstream`` that answers the status query of resumable sessions."""

    def __init__(self, upstream: str, *, refuse_chunks: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.queries = 0
        #: The next this many chunk PUTs are answered 308 with nothing more committed (a session that
        #: takes none of a chunk), without reaching the upstream.
        self.refuse_chunks = refuse_chunks
        self._committed: dict[str, int] = {}
        self._finished: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> SessionStatus:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        upload_id = request.query.get("upload_id", "")
        query = _QUERY.fullmatch(request.headers.get("Content-Range", ""))
        if request.method == "PUT" and upload_id and not body and query:
            self.queries += 1
            if upload_id in self._finished:  # GCS answers a finished session's status with the object
                return web.Response(
                    status=200, body=self._finished[upload_id], content_type="application/json"
                )
            done = self._committed.get(upload_id, 0)
            headers = {"Range": f"bytes=0-{done - 1}"} if done else {}
            return web.Response(status=308, headers=headers)
        if request.method == "PUT" and upload_id and body and self.refuse_chunks > 0:
            self.refuse_chunks -= 1
            done = self._committed.get(upload_id, 0)
            return web.Response(status=308, headers={"Range": f"bytes=0-{done - 1}"} if done else {})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.raw_path,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            if resp.status == 308 and "Range" in resp.headers:
                self._committed[upload_id] = int(resp.headers["Range"].rsplit("-", 1)[1]) + 1
            elif resp.status in (200, 201) and upload_id:
                self._finished[upload_id] = data
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            if "Location" in out and out["Location"].startswith(self.upstream):
                out["Location"] = self.url + out["Location"][len(self.upstream) :]
            return web.Response(status=resp.status, body=data, headers=out)
