"""The next epoch's first shards, looked up on a thread of their own once the epoch is well under way.

Under a ``cache_limit`` eviction keeps the shards the next epoch starts with over shards nobody needs
(:class:`~astreaming.cache.nextuse.LaterUse`), and a DataLoader worker that ends its epoch leaves them in
the ledger for its successor. Looking them up computes the first positions of the next epoch's plan,
which first replays that epoch's shuffle draws: about 0.25 s per 10M samples, once per epoch. Done in
the reading thread right after the first batch, it held up the batches after it in every epoch.

:class:`NextEpochHint` computes them on a daemon thread that the walk starts once it is a quarter through
its plan: the first batches have the process to themselves, and the hint still arrives long before the
end of the epoch, where it matters (until then the current plan's own needs rank those shards). A walk
that reaches its end first waits for the lookup, so the hint is in place before the plan ends, as it
was; a walk stopped early cancels it (nothing is delivered after :meth:`NextEpochHint.cancel`). The
result is the same array the reading thread computed: only the thread changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["START_SHARE", "NextEpochHint"]

_log = logging.getLogger(__name__)

#: Share of its plan a walk has consumed when it starts the lookup.
START_SHARE = 0.25


class NextEpochHint:
    """The lookup of one walk: ``deliver(compute())`` on a thread of its own, at most once.

    Args:
        compute: Returns the shard of each of the next epoch's first positions, or None (no hint).
        deliver: Hands a result to the runtime (a thread-safe call onto its loop; must not block).
        start_at: Plan position from which the walk starts the lookup (see :meth:`due`).
    """

    def __init__(
        self,
        compute: Callable[[], npt.NDArray[np.int64] | None],
        deliver: Callable[[npt.NDArray[np.int64]], None],
        start_at: int,
    ) -> None:
        self._compute = compute
        self._deliver = deliver
        self.start_at = start_at
        self._lock = threading.Lock()
        self._cancelled = False
        self._thread: threading.Thread | None = None
        #: Done once the lookup ended (delivered, or nothing to deliver).
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()

    @classmethod
    def for_plan(
        cls,
        compute: Callable[[], npt.NDArray[np.int64] | None],
        deliver: Callable[[npt.NDArray[np.int64]], None],
        extent: tuple[int, int] | None,
    ) -> NextEpochHint:
        """The lookup of a plan of ``extent`` (epoch, positions; None: unknown, then at its first chunk)."""
        positions = 0 if extent is None else extent[1]
        return cls(compute, deliver, int(positions * START_SHARE))

    def due(self, position: int) -> bool:
        """Whether a walk that reached ``position`` should :meth:`start` the lookup now."""
        return self._thread is None and position >= self.start_at

    def start(self) -> None:
        """Start the lookup (once; later calls do nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="astreaming-next-epoch", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The walk reached its end: start the lookup if it never did, and wait until it was delivered."""
        self.start()
        assert self._thread is not None
        self._thread.join()

    async def afinish(self) -> None:
        """:meth:`finish` for a walk on an event loop (which keeps running meanwhile)."""
        self.start()
        await asyncio.wrap_future(self.done)
        assert self._thread is not None
        self._thread.join()  # it ends right after completing `done`

    def cancel(self) -> None:
        """The walk stopped: nothing is delivered once this returns (a running lookup is abandoned)."""
        with self._lock:
            self._cancelled = True

    def _run(self) -> None:
        try:
            try:
                later = self._compute()
            except Exception as exc:  # a hint only: the next epoch's own plan raises it where it belongs
                _log.debug("the next epoch's first shards could not be looked up: %r", exc)
                return
            if later is None:
                return
            with self._lock:
                if self._cancelled:
                    return
                try:
                    self._deliver(later)
                except RuntimeError as exc:  # the loop thread stopped meanwhile (interpreter exit)
                    _log.debug("the next epoch's first shards were not delivered: %r", exc)
        finally:
            self.done.set_result(None)
