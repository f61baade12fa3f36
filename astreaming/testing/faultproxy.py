"""A fault-injecting reverse HTTP proxy for tests and benchmarks.

:class:`FaultProxy` listens on 127.0.0.1 (a free port by default) and forwards every request to one
upstream HTTP server (fake-gcs-server, moto, Azurite, a static server): method, raw path and query,
headers, streamed request body. Responses stream back chunk by chunk, never buffered whole, with their
status and headers (Content-Length, Content-Range, Content-Encoding, ETag, ...) intact. On the way it
applies a :class:`~astreaming.testing.faults.FaultPlan`: added latency, a bandwidth cap, error
statuses with ``Retry-After``, connection resets, truncated bodies, stalls and short bodies (cut with a
matching Content-Length), deterministic by seed.

Use it as an async context manager on the test's loop, or :class:`ThreadedFaultProxy` from sync code
(benchmarks, DataLoader workers in other processes reach it by URL)::

    async with FaultProxy(upstream_url, FaultPlan(error_rate=0.2, seed=1)) as proxy:
        client_url = proxy.url
        ...
        proxy.plan = FaultPlan()  # change faults at runtime
        assert proxy.stats.errors > 0
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from astreaming.errors import ConfigError
from astreaming.testing.faults import FaultDecision, FaultKind, FaultPlan, FaultStats, Pacer, decide

__all__ = ["FaultEvent", "FaultProxy"]

# Headers that describe one hop, not the message (RFC 9110 §7.6.1); each side of the proxy sets its own.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
    }
)
# aiohttp's client adds these when absent; a proxy must not (Azure's Shared Key signs Content-Type).
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_CHUNK = 64 * 1024
# Where to cut a body of unknown length (chunked): a fraction of this many bytes.
_UNKNOWN_LENGTH_SPAN = 64 * 1024


class _ClientGone(Exception):
    """Writing to the client failed: it went away (its own timeout, a reset)."""


@dataclass(frozen=True)
class FaultEvent:
    """One request as the proxy saw it.

    Attributes:
        key: ``"METHOD path range"`` of the request.
        occurrence: The position the decision was drawn for: the rank among matched requests, or with
            ``FaultPlan.per_key`` how many matched requests with this key came before; -1 if unmatched.
        kind: The fault decided for it (:attr:`FaultKind.NONE` when unmatched or clean).
        status: The injected status for an error.
    """

    key: str
    occurrence: int
    kind: FaultKind
    status: int = 0


class FaultProxy:
    """Reverse HTTP proxy in front of one upstream, injecting the faults of its :attr:`plan`.

    Args:
        upstream_url: Base URL of the upstream server, e.g. ``http://127.0.0.1:4443``. A path in it is
            prefixed to every forwarded path. May instead be given to :meth:`start`.
        plan: Faults to inject; the default plan forwards untouched. Replace :attr:`plan` at any time.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        preserve_host: Forward the client's ``Host`` header instead of the upstream's.
        history: How many :class:`FaultEvent` records to keep (oldest dropped first).
    """

    def __init__(
        self,
        upstream_url: str | None = None,
        plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        preserve_host: bool = False,
        history: int = 10_000,
    ) -> None:
        self.plan = plan if plan is not None else FaultPlan()
        self._upstream = URL(upstream_url) if upstream_url is not None else None
        self._host = host
        self._port = port
        self._preserve_host = preserve_host
        self._stats = FaultStats()
        self._seen: collections.Counter[str] = collections.Counter()
        self._sequence = 0
        self._history: collections.deque[FaultEvent] = collections.deque(maxlen=history)
        self._link: Pacer | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._url: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL clients use instead of the upstream's (``http://127.0.0.1:<port>``)."""
        if self._url is None:
            raise RuntimeError("FaultProxy is not started")
        return self._url

    @property
    def upstream_url(self) -> str:
        """Base URL of the upstream server."""
        if self._upstream is None:
            raise RuntimeError("FaultProxy has no upstream")
        return str(self._upstream)

    async def start(self, upstream_url: str | None = None) -> str:
        """Start listening and return the proxy's base URL.

        Args:
            upstream_url: Base URL of the upstream server, if not given to the constructor.
        """
        if self._runner is not None:
            raise RuntimeError("FaultProxy is already started")
        if upstream_url is not None:
            self._upstream = URL(upstream_url)
        if self._upstream is None or self._upstream.scheme not in ("http", "https"):
            raise ConfigError(f"FaultProxy upstream_url must be an http(s) URL, got {upstream_url!r}")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,  # forward bytes as the upstream encoded them
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            trust_env=False,
        )
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self._url = f"http://{self._host}:{port}"
        return self._url

    async def close(self) -> None:
        """Stop listening, cancel requests in flight (e.g. stalled bodies) and close the client."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._url = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- counters ----------------------------------------------------------------------------------

    @property
    def stats(self) -> FaultStats:
        """A snapshot of the counters."""
        return self._stats.copy()

    def statistics(self) -> FaultStats:
        """A snapshot of the counters (anyio-style name)."""
        return self._stats.copy()

    @property
    def history(self) -> list[FaultEvent]:
        """The most recent requests and the fault decided for each, oldest first."""
        return list(self._history)

    @property
    def in_flight(self) -> int:
        """Requests being handled now (a stalled body counts until it ends or the client leaves)."""
        return len(self._tasks)

    def reset_counters(self) -> None:
        """Zero the counters, the history and the request positions (decisions restart)."""
        self._stats = FaultStats()
        self._seen.clear()
        self._sequence = 0
        self._history.clear()

    # -- request handling --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await self._serve(request)
        finally:
            self._tasks.discard(task)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        plan = self.plan  # one snapshot per request: a runtime change applies to the next request
        self._stats.requests += 1
        decision = self._decide(plan, request)
        if plan.latency > 0:
            await asyncio.sleep(plan.latency)
        if decision.kind is FaultKind.ERROR:
            self._stats.errors += 1
            return self._error_response(plan, decision.status)
        return await self._forward(plan, decision, request)

    def _decide(self, plan: FaultPlan, request: web.Request) -> FaultDecision:
        # The key leaves out the query: it may hold per-run random parts (upload ids, signatures).
        key = f"{request.method} {request.path} {request.headers.get('Range', '')}"
        if plan.match is not None and not plan.match(request):
            self._history.append(FaultEvent(key, -1, FaultKind.NONE))
            return FaultDecision()
        if plan.per_key:
            occurrence = self._seen[key]
            self._seen[key] = occurrence + 1
            decision = decide(plan, key, occurrence)
        else:
            occurrence = self._sequence
            self._sequence += 1
            decision = decide(plan, "", occurrence)
        self._history.append(FaultEvent(key, occurrence, decision.kind, decision.status))
        return decision

    @staticmethod
    def _error_response(plan: FaultPlan, status: int) -> web.Response:
        headers = {}
        if plan.retry_after is not None and status in (429, 503):
            headers["Retry-After"] = f"{plan.retry_after:g}"
        return web.Response(status=status, text=f"fault injected by FaultProxy: {status}\n", headers=headers)

    def _upstream_request_headers(self, request: web.Request) -> CIMultiDict[str]:
        # Headers listed in Connection are hop-by-hop too.
        named = {h.strip().lower() for h in request.headers.get("Connection", "").split(",")}
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            low = name.lower()
            if low not in _HOP_BY_HOP and low not in named:
                headers.add(name, value)
        if self._preserve_host:
            headers["Host"] = request.headers.get("Host", "")
        return headers

    async def _forward(
        self, plan: FaultPlan, decision: FaultDecision, request: web.Request
    ) -> web.StreamResponse:
        assert self._session is not None and self._upstream is not None
        base = str(self._upstream).rstrip("/")
        url = URL(base + request.raw_path, encoded=True)
        data = request.content.iter_chunked(_CHUNK) if request.body_exists else None
        self._stats.forwarded += 1
        try:
            async with self._session.request(
                request.method,
                url,
                headers=self._upstream_request_headers(request),
                data=data,
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            ) as upstream:
                return await self._relay(plan, decision, request, upstream)
        except (aiohttp.ClientError, OSError) as exc:
            # Before the response started, answer 502; after, the client sees a broken body.
            self._stats.upstream_failures += 1
            return web.Response(status=502, text=f"FaultProxy: upstream {url} failed: {exc!r}\n")

    async def _relay(
        self,
        plan: FaultPlan,
        decision: FaultDecision,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
    ) -> web.StreamResponse:
        length = upstream.content_length
        has_body = request.method != "HEAD" and upstream.status not in (204, 304) and length != 0
        cut_at: int | None = None
        if decision.kind is not FaultKind.NONE and has_body:
            cut_at = int((length if length is not None else _UNKNOWN_LENGTH_SPAN) * decision.cut)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                if (
                    decision.kind is FaultKind.SHORT
                    and cut_at is not None
                    and name.lower() == "content-length"
                ):
                    value = str(cut_at)  # the lie: a complete-looking body of the wrong length
                response.headers.add(name, self._rewrite_location(name, value))
        try:
            await response.prepare(request)
        except ConnectionError:
            return response  # the client left before the headers went out
        pacers = self._pacers(plan)
        rates = [p.rate for p in pacers]
        chunk_size = max(1024, min(_CHUNK, int(min(rates) / 50))) if rates else _CHUNK
        sent = 0
        try:
            async for chunk in upstream.content.iter_chunked(chunk_size):
                if cut_at is not None and sent + len(chunk) > cut_at:
                    head, chunk = chunk[: cut_at - sent], chunk[cut_at - sent :]
                    await self._send(response, head, pacers)
                    sent += len(head)
                    if decision.kind is FaultKind.STALL:
                        self._stats.stalls += 1
                        await asyncio.sleep(plan.stall_seconds)
                        cut_at = None
                    elif decision.kind is FaultKind.SHORT:
                        self._stats.shorts += 1
                        break  # ends the body cleanly at the announced (lowered) length
                    else:
                        self._break_connection(request, reset=decision.kind is FaultKind.RESET)
                        return response
                await self._send(response, chunk, pacers)
                sent += len(chunk)
        except _ClientGone:
            return response  # nobody to answer; the upstream response is released on return
        except (aiohttp.ClientError, OSError):
            # The upstream broke mid-body: pass the break on rather than end the body cleanly.
            self._stats.upstream_failures += 1
            self._break_connection(request, reset=True, count=False)
            return response
        with contextlib.suppress(ConnectionError):  # the client left right at the end
            await response.write_eof()
        return response

    async def _send(self, response: web.StreamResponse, data: bytes, pacers: list[Pacer]) -> None:
        if not data:
            return
        for pacer in pacers:
            await pacer.consume(len(data))
        try:
            await response.write(data)
        except (ConnectionError, aiohttp.ClientConnectionError) as exc:
            raise _ClientGone from exc
        self._stats.bytes_sent += len(data)

    def _pacers(self, plan: FaultPlan) -> list[Pacer]:
        """The caps one response's body goes through: the shared link, then its own connection."""
        pacers = []
        if plan.bandwidth is not None:
            if self._link is None or self._link.rate != plan.bandwidth:
                self._link = Pacer(plan.bandwidth)
            pacers.append(self._link)
        if plan.connection_bandwidth is not None:
            # An HTTP/1.1 connection carries one response at a time, so a pacer per response caps
            # each connection.
            pacers.append(Pacer(plan.connection_bandwidth))
        return pacers

    def _break_connection(self, request: web.Request, *, reset: bool, count: bool = True) -> None:
        transport = request.transport
        if count:
            if reset:
                self._stats.resets += 1
            else:
                self._stats.truncations += 1
        if transport is None:
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 makes close() send RST instead of FIN: the client sees ECONNRESET.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            # close() flushes what was written, then FIN: the client sees a body shorter than announced.
            transport.close()

    def _rewrite_location(self, name: str, value: str) -> str:
        # A redirect or a resumable-upload session URL pointing at the upstream must keep going through
        # the proxy.
        if name.lower() != "location" or self._url is None:
            return value
        upstream = str(self._upstream).rstrip("/")
        if value.startswith(upstream):
            return self._url + value[len(upstream) :]
        return value
