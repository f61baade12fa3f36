"""The async-resource side of ``StreamingDataset``: ``await StreamingDataset.open(...)``, ``async with``,
and ``async for`` on event loops other than asyncio's.

Construction reads every stream's ``index.json``; called on a running event loop, ``StreamingDataset(...)``
would stall that loop for the whole transfer. ``await StreamingDataset.open(...)`` builds the dataset in
a worker thread instead (anyio's, so it runs under asyncio and trio alike): the loop keeps serving other
tasks meanwhile. ``async with`` and ``await ds.aclose()`` release the process's downloads, storage
clients and open shards the same way, without blocking the loop while sessions close.

``async for`` runs the plan walk on the caller's loop when that loop is asyncio's (the fetch scheduler
is asyncio code). Under another anyio backend (trio) it drives the sync iteration from a worker thread
instead, ``CHUNK`` samples per hop, so the loop is never blocked and the samples and order are the same.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["CHUNK", "AsyncResourceAPI", "aiter_in_thread", "on_asyncio"]

_D = TypeVar("_D", bound="AsyncResourceAPI")
T = TypeVar("T")

#: Samples moved per worker-thread hop when ``async for`` runs off asyncio.
CHUNK = 256


def on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (trio's is not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def aiter_in_thread(items: Iterator[T], chunk: int = CHUNK) -> AsyncGenerator[T, None]:
    """Drive a sync iterator from anyio worker threads, ``chunk`` items per hop; closes it at the end."""
    import anyio.to_thread  # here, not at module level: only async use needs anyio

    try:
        while True:
            batch = await anyio.to_thread.run_sync(lambda: list(itertools.islice(items, chunk)))
            if not batch:
                return
            for item in batch:
                yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):  # let the walk cancel its downloads, even when cancelled
                await anyio.to_thread.run_sync(close)


class AsyncResourceAPI:
    """``open``/``aclose``/``async with`` for a dataset whose ``close()`` may block briefly."""

    if TYPE_CHECKING:

        def close(self) -> None: ...

    @classmethod
    async def open(cls: type[_D], *args: Any, **kwargs: Any) -> _D:
        """Construct the dataset without blocking the running event loop.

        Takes exactly the arguments of the constructor. The indexes are downloaded in a worker thread;
        cancelling the awaiting task abandons the result (the thread finishes its downloads first).

        Returns:
            The dataset, as ``cls(*args, **kwargs)`` would.
        """
        import anyio.to_thread

        return await anyio.to_thread.run_sync(functools.partial(cls, *args, **kwargs))

    async def aclose(self) -> None:
        """``close()`` without blocking the running loop (storage sessions close on their own loop)."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.close)

    async def __aenter__(self: _D) -> _D:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
