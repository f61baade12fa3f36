"""Run a :class:`~astreaming.testing.faultproxy.FaultProxy` in a background thread with its own loop.

For sync code: benchmarks, sync tests, and DataLoader workers in other processes (which reach the proxy
by its URL). The thread is always joined on exit::

    with ThreadedFaultProxy(upstream_url, FaultPlan(latency=0.02, bandwidth=50e6)) as proxy:
        run_benchmark(proxy.url)
        print(proxy.stats)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from astreaming.testing.faultproxy import FaultEvent, FaultProxy
from astreaming.testing.faults import FaultPlan, FaultStats

__all__ = ["ThreadedFaultProxy"]

_T = TypeVar("_T")


class ThreadedFaultProxy:
    """A :class:`FaultProxy` served from a daemon thread; a sync context manager.

    Args:
        upstream_url: Base URL of the upstream server.
        plan: Faults to inject; replace :attr:`plan` at any time.
        **kwargs: Passed to :class:`FaultProxy` (``host``, ``port``, ``preserve_host``, ``history``).
    """

    def __init__(self, upstream_url: str, plan: FaultPlan | None = None, **kwargs: Any) -> None:
        self._upstream_url = upstream_url
        self._plan = plan
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxy: FaultProxy | None = None

    def start(self) -> str:
        """Start the thread and the proxy; return the proxy's base URL."""
        if self._thread is not None:
            raise RuntimeError("ThreadedFaultProxy is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="astreaming-faultproxy", daemon=True)
        self._thread.start()
        ready.wait()
        # The proxy (and its aiohttp session) is created inside the loop that uses it.
        try:
            self._proxy = self._call(self._make())
            return self._call(self._proxy.start())
        except BaseException:
            self.stop()
            raise

    async def _make(self) -> FaultProxy:
        return FaultProxy(self._upstream_url, self._plan, **self._kwargs)

    def stop(self) -> None:
        """Close the proxy, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._proxy is not None:
                self._call(self._proxy.close())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._loop = self._thread = self._proxy = None

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = 60.0) -> _T:
        assert self._loop is not None
        future: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def __enter__(self) -> ThreadedFaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def _running(self) -> FaultProxy:
        if self._proxy is None:
            raise RuntimeError("ThreadedFaultProxy is not started")
        return self._proxy

    @property
    def url(self) -> str:
        """Base URL clients use instead of the upstream's."""
        return self._running.url

    @property
    def plan(self) -> FaultPlan:
        """The plan in force. Assigning replaces it for the following requests."""
        return self._running.plan if self._proxy is not None else (self._plan or FaultPlan())

    @plan.setter
    def plan(self, plan: FaultPlan) -> None:
        self._plan = plan
        if self._proxy is not None:
            # One attribute store: atomic under the GIL, read once per request by the loop thread.
            self._proxy.plan = plan

    @property
    def stats(self) -> FaultStats:
        """A snapshot of the counters, taken on the proxy's loop."""
        return self.statistics()

    def statistics(self) -> FaultStats:
        """A snapshot of the counters (anyio-style name), taken on the proxy's loop."""
        proxy = self._running

        async def snapshot() -> FaultStats:
            return proxy.stats

        return self._call(snapshot())

    @property
    def history(self) -> list[FaultEvent]:
        """The most recent requests and their faults, oldest first, copied on the proxy's loop."""
        proxy = self._running

        async def snapshot() -> list[FaultEvent]:
            return proxy.history

        return self._call(snapshot())
