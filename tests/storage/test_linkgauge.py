"""LinkGauge tells a link with a per-connection cap from one a single connection fills, and the ranged
downloader splits on the first and not on the second. A simulated link drives an injected clock: each
request in flight moves ``min(per-connection cap, link ÷ requests in flight)`` bytes per second."""

from __future__ import annotations

import pytest

from astreaming.storage import firstbyte, ranged
from astreaming.storage.linkgauge import LinkGauge, Request
from astreaming.storage.ranged import RangedDownloader

MB = 1_000_000
MiB = 1 << 20


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


def served(sim_now: list[float], gauge: LinkGauge, downloader: RangedDownloader, ttfb: float, nbytes: int,
           rate: float) -> None:  # fmt: skip
    """One request on an injected clock: its answer's headers after ``ttfb`` seconds (a backend tells
    :mod:`~astreaming.storage.firstbyte`), then ``nbytes`` at ``rate`` bytes/s on its connection."""
    request = gauge.begin()
    with gauge.receiving(request):
        sim_now[0] += ttfb
        firstbyte.arrived()
    sim_now[0] += nbytes / rate
    gauge.end(request, nbytes)
    downloader.observe(nbytes, request.body_seconds(sim_now[0]))


def test_time_to_first_byte_is_measured_apart_from_the_transfer() -> None:
    now = [0.0]
    gauge = LinkGauge(clock=lambda: now[0])
    assert gauge.request_cost() is None
    unwatched = gauge.begin()  # a backend that never says when its headers came: no cost recorded
    firstbyte.arrived()  # outside any receiving block: nobody hears it
    now[0] = 1.0
    gauge.end(unwatched, 8 * MB)
    assert gauge.request_cost() is None and unwatched.first_byte is None
    assert unwatched.body_seconds(1.0) == 1.0  # without a first byte, the whole request
    failed = gauge.begin()
    with gauge.receiving(failed):
        now[0] += 5.0
        firstbyte.arrived()
    gauge.end(failed)  # an error answer: its wait says nothing about a transfer
    assert gauge.request_cost() is None
    for ttfb in (0.2, 0.4, 0.3):
        request = gauge.begin()
        with gauge.receiving(request):
            now[0] += ttfb
            firstbyte.arrived()
        now[0] += 1.0
        gauge.end(request, 1)  # small requests tell the cost too
        assert request.body_seconds(now[0]) == pytest.approx(1.0)
    assert gauge.request_cost() == pytest.approx(0.3)  # the median


def test_a_cheap_server_keeps_parts_sized_by_rate() -> None:
    """First byte after a round trip (20 ms), 8 MiB/s per connection: parts of half a second (4 MiB)."""
    now = [0.0]
    gauge = LinkGauge(clock=lambda: now[0])
    downloader = RangedDownloader(clock=lambda: now[0], gauge=gauge)
    for _ in range(5):
        served(now, gauge, downloader, ttfb=0.02, nbytes=8 * MiB, rate=8 * MiB)
    assert downloader.rate == pytest.approx(8 * MiB)  # the transfer alone: not the wait for the first byte
    assert downloader.part_size() == ranged.MIN_PART == 4 * MiB
    assert downloader.part_for(64 * MiB) == 4 * MiB


def test_a_costly_server_gets_fewer_larger_parts() -> None:
    """A server that answers after 0.2 s (it copies the object first, or queues requests) at the same
    8 MiB/s: parts of 10 x 0.2 s of transfer (16 MiB), so the wait stays under a tenth of each request;
    a moderately slow one (0.1 s) gets 8 MiB parts; the largest part bounds them."""
    now = [0.0]
    gauge = LinkGauge(clock=lambda: now[0])
    downloader = RangedDownloader(clock=lambda: now[0], gauge=gauge, max_part=64 * MiB)
    for _ in range(5):
        served(now, gauge, downloader, ttfb=0.1, nbytes=8 * MiB, rate=8 * MiB)
    assert downloader.rate == pytest.approx(8 * MiB)  # not 8 MiB / 1.1 s: the server's wait
    assert downloader.part_size() == pytest.approx(8 * MiB, abs=16)
    for _ in range(40):
        served(now, gauge, downloader, ttfb=0.2, nbytes=8 * MiB, rate=8 * MiB)
    assert downloader.part_size() == pytest.approx(16 * MiB, abs=16)
    assert downloader.part_for(64 * MiB) == downloader.part_size()  # ~4 requests for a 64 MiB shard, not 16
    for _ in range(40):
        served(now, gauge, downloader, ttfb=2.0, nbytes=8 * MiB, rate=8 * MiB)
    assert downloader.part_size() == 64 * MiB  # bounded by the largest part
    # Requests come back to a round trip (the server caught up): parts follow the newest ones.
    for _ in range(40):
        served(now, gauge, downloader, ttfb=0.02, nbytes=8 * MiB, rate=8 * MiB)
    assert downloader.part_size() == 4 * MiB


def test_an_object_alone_still_takes_several_connections() -> None:
    """Large parts never leave an object (the last of an epoch) to one or two connections: it takes
    four parts where each is at least the smallest part."""
    now = [0.0]
    gauge = LinkGauge(clock=lambda: now[0])
    downloader = RangedDownloader(clock=lambda: now[0], gauge=gauge)
    for _ in range(5):
        served(now, gauge, downloader, ttfb=1.0, nbytes=8 * MiB, rate=8 * MiB)
    assert downloader.part_size() == ranged.MAX_PART == 16 * MiB
    assert downloader.part_for(20 * MiB) == 5 * MiB
    assert downloader.part_for(12 * MiB) == 4 * MiB
    assert downloader.part_for(256 * MiB) == 16 * MiB
