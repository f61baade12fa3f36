"""How many connections the link takes to fill, measured from the downloads themselves.

An object store caps each connection (tens of MB/s) far below what the link carries, so a download
needs several connections at once to use the link; a plain HTTP link is filled by one. Nothing says
which link this is, so :class:`LinkGauge` tells them apart from the requests it watches: each request
records its rate and how many requests were in flight on average while it ran.

- A request that got its share of the link (``rate x in flight`` close to the best total seen) says
  nothing about a per-connection cap: the link was the limit.
- A request that got clearly less than its share was held back by its own connection: its rate is what
  one connection gets.

With requests of the second kind the link takes ``best total ÷ one connection's rate`` connections. With
none, and a request that ran alone and got the best total, one connection fills the link (splitting a
download gains nothing there). With neither, every request got its share of a full link: the gauge cannot
tell (:meth:`LinkGauge.connections` is ``None``) and keeps the concurrency that filled it.

Each request also records what it cost before its first byte arrived (:meth:`LinkGauge.receiving`
hears it from the backend, see :mod:`~astreaming.storage.firstbyte`): the round trip, plus the time a
server spends before answering. :meth:`LinkGauge.request_cost` is the median of the newest; the ranged
downloader makes parts long enough that this cost stays a small share of each.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from astreaming.storage import firstbyte

__all__ = ["LinkGauge", "Request"]

#: Requests smaller than this are much round trip (an object's short last part): their rate says little
#: about the link.
MIN_MEASURED = 2 << 20
#: A request whose ``rate x in flight`` is under this share of the best total was held back by its
#: own connection, not by the link (round trips and noise cost the others up to ~10%).
SHARE = 0.8
#: A request with at most this many in flight on average (itself included) ran alone.
SOLO = 1.25
#: Measured requests remembered (the link may change: the estimate follows the newest ones).
HISTORY = 32


@dataclass
class Request:
    """One request in flight (returned by :meth:`LinkGauge.begin`)."""

    began: float
    area: float  # the gauge's in-flight integral when it began
    done: bool = False
    #: When the answer's headers arrived (the last attempt's), if the backend said so.
    first_byte: float | None = None

    def body_seconds(self, now: float) -> float:
        """Seconds from the first byte (or the start, if unknown) to ``now``: the transfer alone."""
        return now - (self.began if self.first_byte is None else self.first_byte)


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
        # Seconds from start to first byte of the newest requests that received one.
        self._costs: collections.deque[float] = collections.deque(maxlen=HISTORY)
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

    @contextlib.contextmanager
    def receiving(self, request: Request) -> Iterator[None]:
        """Inside the block, a backend's answer to ``request`` stamps its first byte (see
        :mod:`~astreaming.storage.firstbyte`)."""

        def stamp() -> None:
            request.first_byte = self._clock()

        with firstbyte.watch(stamp):
            yield

    def end(self, request: Request, nbytes: int = 0) -> None:
        """A request finished, ``nbytes`` received (0 for a failed or cancelled one: not measured)."""
        if request.done:
            return
        request.done = True
        now = self._tick()
        self.in_flight -= 1
        seconds = now - request.began
        if nbytes > 0 and request.first_byte is not None:
            self._costs.append(request.first_byte - request.began)
        if nbytes >= self.min_measured and seconds > 0:
            self._points.append(((self._area - request.area) / seconds, nbytes / seconds))
        for listener in list(self._listeners):
            listener()

    def on_end(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every request ends; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def connections(self) -> float | None:
        """Connections that fill the link (1.0: one does), or ``None`` while the requests cannot tell.

        ``None`` before anything was measured, and while every request got its share of the link with
        others in flight: then the link was full, but whether one connection could fill it alone is
        not known (a request that ran alone and got the link's best total shows that).
        """
        if not self._points:
            return None
        link = max(n * rate for n, rate in self._points)
        held = [rate for n, rate in self._points if n * rate < SHARE * link]
        if held:
            return max(1.0, link / _median(held))
        if any(n <= SOLO for n, _ in self._points):
            return 1.0  # a request alone got (nearly) the best total: one connection fills the link
        return None

    def request_cost(self) -> float | None:
        """Median seconds the newest requests waited for their first byte (``None``: none said)."""
        return _median(self._costs) if self._costs else None

    def unmeasured(self) -> bool:
        """Whether no request was measured yet."""
        return not self._points

    def spare(self) -> bool:
        """Whether another request would add to the link.

        Decided: fewer in flight than fill it, plus one whose start (a round trip) overlaps the others'
        ends. Nothing measured yet: no (the first downloads run as they were started, so their rates
        say what the link gives them). Undecided: fewer than the most that were seen filling it, plus
        one.
        """
        needed = self.connections()
        if needed is None:
            if not self._points:
                return False
            needed = max(n for n, _ in self._points)
        return self.in_flight < math.ceil(needed) + 1


def _median(values: Iterable[float]) -> float:
    """The median, as ``statistics.median`` computes it (the mean of the middle two for an even count);
    not imported from there: ``statistics`` brings ``decimal`` and ``fractions`` (~0.5 MB resident)
    into every process that downloads."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("no median of no values")
    middle = n // 2
    return float(ordered[middle]) if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
