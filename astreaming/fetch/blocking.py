"""Run a coroutine to completion from sync code on a short-lived loop that leaves no connection open.

The dataset constructor uses this when the process's loop thread cannot serve (a local-only dataset, or a
constructor called on that loop thread itself). Nothing (loop, thread, session, socket) outlives the call,
so the caller stays safe to fork and pickle afterwards.

Why the loop remembers its connections: a TLS connection closed gracefully waits for the peer's
``close_notify`` before its socket is closed; when the loop ends first, that socket stays open until the
garbage collector finds it (an "unclosed transport" ResourceWarning at a random later moment, also in
forked children that inherited it). The loop here is a :class:`asyncio.SelectorEventLoop` whose public
``create_connection``/``create_unix_connection`` record every transport they return; at the end, every
one of them is aborted, which closes the socket at once whatever state its close had reached. Only public
asyncio API is used, so no other loop's internals are read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_blocking"]

T = TypeVar("T")


class _ClosingLoop(asyncio.SelectorEventLoop):
    """A selector loop that remembers the client connections it makes, to abort them at its end."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[asyncio.BaseTransport] = []

    # Every client connection of asyncio (open_connection, aiohttp's connector, happy eyeballs with a
    # ready socket, TLS) is made by one of these two; start_tls wraps a transport made here already.
    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        made = await super().create_connection(*args, **kwargs)
        self.connections.append(made[0])
        return made

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        made = await super().create_unix_connection(*args, **kwargs)
        self.connections.append(made[0])
        return made

    def abort_connections(self) -> None:
        """Abort every connection made on this loop (a no-op for those already closed)."""
        made, self.connections = self.connections, []
        for transport in made:
            transport.abort()  # type: ignore[attr-defined]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a :class:`_ClosingLoop`, aborting its connections before it closes."""
    loop = _ClosingLoop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            leftover = asyncio.all_tasks(loop)
            for task in leftover:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.abort_connections()
            loop.run_until_complete(asyncio.sleep(0))  # abort() closes the socket in the next iteration
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop.

    A short-lived thread with its own loop: nothing (loop, thread, session, socket) outlives the call.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="astreaming-init") as pool:
        return pool.submit(_run, coro).result()
