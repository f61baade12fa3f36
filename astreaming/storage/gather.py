"""A download's chunks gathered in one reused buffer and written to its file in a worker thread.

Bodies arrive in chunks of tens to hundreds of KB; a thread hop per chunk would cost more than the write,
so chunks are gathered and written a buffer at a time, in a worker thread (a slow disk never stalls the
event loop). The buffer is one anonymous mapping per download, filled and written again and again:

- what a download holds is bounded by the buffer plus the chunk being copied in;
- the gathering allocates nothing per write: PLACEHOLDER
- a mapping's pages become resident only as bytes land in them (a small file costs its own size) and
  go back to the kernel as soon as the download ends.
"""

from __future__ import annotations

import asyncio
import mmap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Gather", "settle"]

T = TypeVar("T")


async def settle(fut: asyncio.Future[T], on_cancel: Callable[[], None] | None = None) -> T:
    """Await a worker-thread future to its end, even if we are cancelled meanwhile.

    A call already handed to a thread cannot be stopped; returning early would let it keep writing
    (for example into a file descriptor that is closed and reused). On cancellation ``on_cancel`` is
    called (to ask the thread to stop), the thread is waited for, and the cancellation is re-raised.
    """
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not cancelled and on_cancel is not None:
                on_cancel()
            cancelled = True
        except BaseException:
            break
    if cancelled:
        raise asyncio.CancelledError
    return fut.result()


class Gather:
    """Gathers bytes for one file and writes them ``capacity`` at a time with ``write(view, offset)``.

    ``write`` runs in a worker thread and must write all of ``view`` at ``offset`` (its position in the
    file: ``offset`` given here, plus what was added before). :meth:`add` and :meth:`flush` return only
    once any write they started is over, even when cancelled (see :func:`settle`), so nothing writes
    from the buffer after they return. A chunk at least ``capacity`` long that finds the buffer empty is
    written as it is, without a copy.

    Args:
        write: Writes a view at a file offset (called in a worker thread).
        capacity: Bytes gathered before a write.
        offset: File offset of the first byte added.
    """

    def __init__(self, write: Callable[[memoryview, int], None], *, capacity: int, offset: int = 0) -> None:
        self._write = write
        self._capacity = max(1, capacity)
        self._buffer: mmap.mmap | None = None
        self._used = 0
        #: File offset of the first byte not yet written.
        self.offset = offset

    @property
    def pending(self) -> int:
        """Bytes gathered and not yet written."""
        return self._used

    async def add(self, data: bytes | bytearray | memoryview) -> None:
        """Gather ``data``; write the buffer out each time it fills."""
        view = memoryview(data).cast("B")
        if not self._used and len(view) >= self._capacity:
            await self._write_out(view)
            return
        while view:
            buffer = self._buffer
            if buffer is None:
                buffer = self._buffer = mmap.mmap(-1, self._capacity, flags=mmap.MAP_PRIVATE)
            n = min(len(view), self._capacity - self._used)
            buffer[self._used : self._used + n] = view[:n]
            self._used += n
            view = view[n:]
            if self._used == self._capacity:
                await self.flush()

    async def flush(self) -> None:
        """Write what is gathered."""
        if not self._used:
            return
        assert self._buffer is not None
        used, self._used = self._used, 0
        await self._write_out(memoryview(self._buffer)[:used])

    async def _write_out(self, view: memoryview) -> None:
        offset = self.offset
        self.offset += len(view)
        fut = asyncio.get_running_loop().run_in_executor(None, self._write, view, offset)
        await settle(fut)

    def close(self) -> None:
        """Give the buffer back (gathered bytes not written are dropped)."""
        # Dropped, not closed: a worker thread's call may hold a view of it a moment after its write
        # returned, and mmap.close() refuses while a view exists. The last reference unmaps it.
        self._buffer = None
        self._used = 0
