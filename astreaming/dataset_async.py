"""The async-resource side of ``StreamingDataset``: ``await StreamingDataset.open(...)``, ``async with``.

Construction reads every stream's ``index.json``; called on a running event loop, ``StreamingDataset(...)``
would stall that loop for the whole transfer. ``await StreamingDataset.open(...)`` builds the dataset in
a worker thread instead (anyio's, so it runs under asyncio and trio alike): the loop keeps serving other
tasks meanwhile. ``async with`` and ``await ds.aclose()`` release the process's downloads, storage
clients and open shards the same way, without blocking the loop while sessions close.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

__all__ = ["AsyncResourceAPI"]

_D = TypeVar("_D", bound="AsyncResourceAPI")


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
        return await anyio.to_thread.run_sync(functools.partial(cls, *args, **kwargs))

    async def aclose(self) -> None:
        """``close()`` without blocking the running loop (storage sessions close on their own loop)."""
        await anyio.to_thread.run_sync(self.close)

    async def __aenter__(self: _D) -> _D:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
