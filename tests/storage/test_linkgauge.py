"""LinkGauge tells a link with a per-connection cap from one a single connection fills, and the ranged
downloader splits on the first and not on the second. A simulated link drives an injected clock: each
request in flight moves ``min(per-connection cap, link ÷ requests in flight)`` bytes per second."""

from __future__ import annotations

from astreaming.storage.linkgauge import LinkGauge, Request
from astreaming.storage.ranged import RangedDownloader

MB = 1_000_000


class SimulatedLink:
    """A fluid model of a link: requests share ``link`` bytes/s, each at most ``per_connection``."""

    def __init__(self, link: float, per_connection: float | None) -> None:
        self.link, self.per_connection = link, per_connection
        self.now = 0.0
        self.gauge = LinkGauge(clock=lambda: self.now)
        self.active: list[list[object]] = []  # [request, bytes left, bytes total]

    def start(self, nbytes: int) -> None:
        self.active.append([self.gauge.begin(), float(nbytes), nbytes])

    def rate(self) -> float:
        share = self.link / len(self.active)
        return share if self.per_connection is None else min(share, self.per_connection)

    def run_until_done(self, refill: list[int] | None = None) -> None:
        """Advance time to each completion (ending it at the gauge), starting ``refill`` sizes as
        requests end, until nothing is in flight."""
        queue = list(refill or [])
        while self.active:
            rate = self.rate()
            first = min(self.active, key=lambda a: a[1])  # type: ignore[arg-type, return-value]
            step = float(first[1]) / rate  # type: ignore[arg-type]
            self.now += step
            for item in self.active:
                item[1] = float(item[1]) - step * rate  # type: ignore[arg-type]
            for item in [a for a in self.active if float(a[1]) <= 1e-6]:  # type: ignore[arg-type]
                self.active.remove(item)
                request = item[0]
                assert isinstance(request, Request)
                self.gauge.end(request, int(item[2]))  # type: ignore[call-overload]
                if queue:
                    self.start(queue.pop(0))


def download_object_in_parts(sim: SimulatedLink, size: int, part: int) -> None:
    """One object as parts started together (the last one shorter), as RangedDownloader does."""
    for start in range(0, size, part):
        sim.start(min(part, size - start))
    sim.run_until_done()


def test_a_per_connection_cap_shows_and_is_split_for() -> None:
    sim = SimulatedLink(link=100 * MB, per_connection=10 * MB)
    downloader = RangedDownloader(clock=lambda: sim.now, gauge=sim.gauge)
    assert sim.gauge.connections() is None and not sim.gauge.spare()  # nothing measured: no room known
    assert downloader.splits(64 << 20)  # a first object this large is split at once
    download_object_in_parts(sim, 64 * MB, 6 * MB)  # 11 parts: each got its share of a full link
    assert sim.gauge.connections() is None  # a full link, but whether one connection could fill it?
    assert downloader.splits(64 << 20)  # cannot tell: keep splitting (the link is full either way)
    # Whole objects two at a time: each gets the cap, a fifth of the best total seen.
    sim.start(30 * MB)
    sim.start(40 * MB)
    sim.run_until_done()
    needed = sim.gauge.connections()
    assert needed is not None and 9 <= needed <= 11  # about 100 / 10 connections fill the link
    assert downloader.splits(16 << 20)
    # Ten in flight leave room for the one that overlaps their ends; twelve do not.
    for _ in range(10):
        sim.gauge.begin()
    assert sim.gauge.spare()
    sim.gauge.begin()
    sim.gauge.begin()
    assert not sim.gauge.spare()


def test_a_link_one_connection_fills_is_not_split_for() -> None:
    sim = SimulatedLink(link=50 * MB, per_connection=None)
    downloader = RangedDownloader(clock=lambda: sim.now, gauge=sim.gauge)
    assert not downloader.splits(10 << 20)  # the first object runs whole, alone
    sim.start(10 * MB)
    assert not sim.gauge.spare()  # nothing measured: nothing starts beside the first request
    sim.run_until_done()
    assert sim.gauge.connections() == 1.0  # alone, it got the whole link
    sim.start(10 * MB)
    sim.start(10 * MB)
    sim.run_until_done()  # two sharing the link get half each: still one connection's worth
    assert sim.gauge.connections() == 1.0
    assert not downloader.splits(64 << 20)  # parts would only add requests
    sim.start(10 * MB)  # one in flight: another one's round trip may overlap its end
    assert sim.gauge.spare()
    sim.start(10 * MB)
    assert not sim.gauge.spare()  # two share a link one fills: look-ahead waits
    sim.run_until_done()


def test_a_capped_link_found_from_whole_downloads() -> None:
    """Objects too small to split at first: the first alone gets the cap; two at once get twice it."""
    sim = SimulatedLink(link=100 * MB, per_connection=10 * MB)
    downloader = RangedDownloader(clock=lambda: sim.now, gauge=sim.gauge)
    assert not downloader.splits(10 << 20)
    sim.start(10 * MB)
    sim.run_until_done()
    assert sim.gauge.connections() == 1.0  # so far nothing says otherwise
    sim.start(10 * MB)
    sim.start(10 * MB)
    sim.run_until_done()
    needed = sim.gauge.connections()
    assert needed is not None and needed >= 1.5  # the total doubled: connections, not the link, limit
    assert downloader.splits(10 << 20)


def test_small_and_failed_requests_are_not_measured() -> None:
    now = [0.0]
    gauge = LinkGauge(clock=lambda: now[0])
    small, failed = gauge.begin(), gauge.begin()
    now[0] = 1.0
    gauge.end(small, 1 * MB)  # under the smallest measured size: mostly round trip
    gauge.end(failed)  # failed: frees its connection, says nothing about the rate
    gauge.end(failed)  # ending twice is harmless
    assert gauge.in_flight == 0 and gauge.connections() is None


def test_listeners_hear_every_end() -> None:
    gauge = LinkGauge(clock=lambda: 0.0)
    heard: list[int] = []
    remove = gauge.on_end(lambda: heard.append(gauge.in_flight))
    gauge.end(gauge.begin())
    remove()
    gauge.end(gauge.begin())
    assert heard == [0]
