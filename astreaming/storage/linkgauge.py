"""How many connections the link takes to fill, measured from the downloads themselves.

An object store caps each connection (tens of MB/s) far below what the link carries, so a download
needs several connections at once to use the link; a plain HTTP link is filled by one. Nothing says
which link this is, so :class:`LinkGauge` tells them apart from the requests it watches: each request
records its rate and how many requests were in flight on average while it ran.

- A request that got its share of the link (``rate x in flight`` close to the best total seen) says
  nothing about a per-connection cap: the link was the limit.
- A request that got clearly less than its share was held back by its own connection: its rate is what
  one connection gets.

With no request of the second kind the link is filled by one connection (splitting a download gains
nothing there); otherwise it takes ``best total ÷ one connection's rate`` connections. Concurrency varies
by itself as the parts of a download finish one after another, so no probing traffic is needed.
"""

from __future__ import annotations

import collections
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LinkGauge", "Request"]

#: Requests smaller than this are mostly round trip: their rate says little about the link.
MIN_MEASURED = 1 << 20
#: A request whose ``rate x in flight`` is under this share of the best total was held back by its
#: own connection, not by the link (round trips and noise cost the others up to ~10%).
SHARE = 0.8
#: Measured requests remembered (the link may change: the estimate follows the newest ones).
HISTORY = 32


@dataclass
class Request:
    """One request in flight (returned by :meth:`LinkGauge.begin`)."""

    began: float
    area: float  # the gauge's in-flight integral when it began
    done: bool = False


class LinkGauge:
    """Counts requests in flight and estimates how many connections fill the link (one per process).

    Args:
        clock: Monotonic clock (injectable for tests).
        min_measured: Smallest request, in bytes, whose rate is measured.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, min_measured: int = MIN_MEASURED
    ) -> None:
        self._clock = clock
        self.min_measured = min_measured
        #: Requests in flight now.
        self.in_flight = 0
        self._area = 0.0  # integral of in_flight over time
        self._last = clock()
        # (mean requests in flight while it ran, bytes per second) of the newest measured requests.
        self._points: collections.deque[tuple[float, float]] = collections.deque(maxlen=HISTORY)
        self._listeners: list[Callable[[], None]] = []

    def _tick(self) -> float:
        now = self._clock()
        self._area += self.in_flight * (now - self._last)
        self._last = now
        return now

    def begin(self) -> Request:
        """A request starts; pass the result to :meth:`end` when it finishes (or fails)."""
        now = self._tick()
        self.in_flight += 1
        return Request(now, self._area)

    def end(self, request: Request, nbytes: int = 0) -> None:
        """A request finished, ``nbytes`` received (0 for a failed or cancelled one: not measured)."""
        if request.done:
            return
        request.done = True
        now = self._tick()
        self.in_flight -= 1
        seconds = now - request.began
        if nbytes >= self.min_measured and seconds > 0:
            self._points.append(((self._area - request.area) / seconds, nbytes / seconds))
        for listener in list(self._listeners):
            listener()

    def on_end(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every request ends; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def connections(self) -> float | None:
        """Connections that fill the link (1.0: one does), or ``None`` before anything was measured."""
        if not self._points:
            return None
        link = max(n * rate for n, rate in self._points)
        held = [rate for n, rate in self._points if n * rate < SHARE * link]
        if not held:
            return 1.0  # every request got its share of the link: the link, not a connection, limits
        return max(1.0, link / statistics.median(held))

    def per_connection(self) -> float | None:
        """Bytes per second one connection gets (the best total when one fills the link), or ``None``."""
        needed = self.connections()
        if needed is None:
            return None
        return max(n * rate for n, rate in self._points) / needed

    def spare(self) -> bool:
        """Whether another request would add to the link: fewer in flight than fill it, plus one whose
        start (a round trip) overlaps the others' ends. Before any measurement: one, plus that one."""
        needed = self.connections()
        return self.in_flight < math.ceil(needed if needed is not None else 1.0) + 1
