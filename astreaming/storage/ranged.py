"""Download a large object as byte ranges over parallel connections, as s5cmd and the AWS CLI do.

Object stores give one connection a fraction of what many connections get together (tens of MB/s per
connection under a link of GB/s). A 64 MB shard fetched over one connection then takes seconds while
the link idles, and a handful of shards in flight cannot fill it. Splitting each large object into
parts fetched concurrently keeps enough connections busy without a knob: the part size follows the
throughput one request was measured to get (a part should take about :data:`PART_SECONDS`, so the
request's round trip is a small share of it). A server that takes long before it answers (time to first
byte well above the round trip: one that copies the whole object first, or queues requests) gets fewer,
larger parts: each part then takes at least :data:`COST_RATIO` times the measured time to first byte,
so that cost stays under a tenth of the request. Where one connection already fills the link (as a
:class:`~astreaming.storage.linkgauge.LinkGauge` measures it), objects are not split.

The parts stream into the caller's temp file at their offsets (:meth:`Backend.read_range_into`), a
gathered :data:`WRITE_GATHER` at a time, so a large part never sits in memory whole; a backend that
cannot stream a range holds its part in memory until written, and the bytes so held are bounded by
:data:`BUFFER_BYTES`. The caller verifies and publishes the file as it would a whole download. Each part
is retried on its own under the stream's retry policy (a retry writes its range again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from astreaming.storage.base import CHUNK_SIZE, Backend, discard
from astreaming.storage.linkgauge import LinkGauge
from astreaming.storage.partfile import settle
from astreaming.storage.retry import RetryPolicy, RetryStats, WrongLength, with_retries
from astreaming.storage.urls import redact

__all__ = ["BUFFER_BYTES", "COST_RATIO", "MAX_PART", "MIN_PART", "PART_SECONDS", "RangedDownloader"]

#: Smallest and largest part. Objects smaller than two parts are downloaded whole.
MIN_PART = 4 << 20
MAX_PART = 16 << 20
#: A part should take about this long on one connection at the measured rate.
PART_SECONDS = 0.5
#: ... and at least this many times what a request waits for its first byte (the gauge's median).
COST_RATIO = 10.0
#: Bytes of parts held in memory at once (fetched, not yet written), over every object in flight.
BUFFER_BYTES = 96 << 20
#: A streamed part is written in pieces of at least this many bytes (one thread hop each). Every part in
#: flight holds up to this plus a chunk: with 1 MB here (and 4 MB for ``partfile.WRITE_BUFFER``) the cold
#: S3 epoch of ``python -m benchmarks remote``, ~12 parts in flight at its peak, peaked at 273.5 MB of
#: tree RSS, at 256 KB (and 1 MB) at 259.2 MB, in 0.955x the time (medians of 3 interleaved rounds, load
#: 3, 7 Dec 2026: ``benchmarks/results/remote_ttfs_rss_s9_ab.json``). Smaller pieces saved no more.
WRITE_GATHER = 256 << 10
#: Most parts requested at once.
MAX_PARALLEL = 16
#: Weight of the newest measurement in the running estimate of one request's throughput.
_SMOOTHING = 0.3
#: An object split takes at least this many parts where they are no smaller than the smallest part.
MIN_PARTS = 4
#: Split only where the link takes at least this many connections to fill.
SPLIT_CONNECTIONS = 1.5


class RangedDownloader:
    """Splits large downloads into parts, sized from the throughput measured so far (one per process).

    Args:
        clock: Monotonic clock measuring each part's request (injectable for tests).
        min_part: Smallest part, in bytes (also the part size before anything was measured); default
            :data:`MIN_PART`.
        max_part: Largest part, in bytes; default :data:`MAX_PART`.
        gauge: Counts the requests in flight and tells whether the link takes more than one
            connection (a new one on ``clock`` by default; the fetcher shares it with whole downloads).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_part: int | None = None,
        max_part: int | None = None,
        gauge: LinkGauge | None = None,
    ) -> None:
        self._clock = clock
        self.gauge = gauge if gauge is not None else LinkGauge(clock=clock)
        self.min_part = min_part if min_part is not None else MIN_PART
        self.max_part = max(max_part if max_part is not None else MAX_PART, self.min_part)
        #: Bytes per second one request got (running estimate), None until a part was measured.
        self.rate: float | None = None
        # Parts requested at once: at most MAX_PARALLEL, and at most BUFFER_BYTES of them (so smaller
        # parts mean more connections, larger ones fewer, for the same memory).
        self._slots = asyncio.Semaphore(MAX_PARALLEL)
        self._buffer = _ByteBudget(BUFFER_BYTES)
        self.parts = 0  # parts downloaded (statistics)

    def part_size(self) -> int:
        """The part size now: what one connection moves in :data:`PART_SECONDS`, or in
        :data:`COST_RATIO` times a request's time to first byte if that is longer, within the bounds."""
        if self.rate is None:
            return self.min_part
        seconds = PART_SECONDS
        cost = self.gauge.request_cost()
        if cost is not None:
            seconds = max(seconds, COST_RATIO * cost)
        return int(min(self.max_part, max(self.min_part, self.rate * seconds)))

    def part_for(self, size: int) -> int:
        """The part size for an object of ``size`` bytes: :meth:`part_size`, but small enough for
        :data:`MIN_PARTS` parts where the smallest part allows (an object alone in flight, such as the
        last of an epoch, still takes several connections)."""
        return min(self.part_size(), max(self.min_part, -(-size // MIN_PARTS)))

    def splits(self, size: int) -> bool:
        """Whether an object of ``size`` bytes is downloaded in parts (at least two of the smallest).

        Not where the gauge measured that one connection fills the link: parts would only add requests.
        Where it cannot tell, they are split (the link is full either way). The first object, before
        anything was measured, is split only if it is at least two of the largest parts.
        """
        if size < 2 * self.min_part:
            return False
        needed = self.gauge.connections()
        if needed is None and self.gauge.unmeasured():
            # The first download: one alone tells what a connection gets, unless the object is so
            # large that a capped connection would take long over it.
            return size >= 2 * self.max_part
        return needed is None or needed >= SPLIT_CONNECTIONS

    def observe(self, nbytes: int, seconds: float) -> None:
        """Fold one request's throughput into the estimate (``seconds``: from its first byte to its
        end where known, so a slow answer does not pass for a slow connection)."""
        if seconds <= 0 or nbytes <= 0:
            return
        rate = nbytes / seconds
        self.rate = rate if self.rate is None else (1 - _SMOOTHING) * self.rate + _SMOOTHING * rate

    async def download(
        self,
        backend: Backend,
        url: str,
        size: int,
        dest: Path,
        *,
        policy: RetryPolicy,
        stats: RetryStats,
    ) -> int:
        """Write the object's ``size`` bytes into ``dest`` (created; removed again on failure).

        Returns:
            The bytes written (``size``).

        Raises:
            FormatError: The object is not ``size`` bytes long, on every attempt (the last part asks for
                one byte more, so a longer object is noticed too, as a whole download notices it by its
                length).
            TransientStorageError: A part kept failing.
            StorageError: A non-retryable failure of any part; the other parts are cancelled.
        """
        part = self.part_for(size)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        tasks = [
            asyncio.ensure_future(
                self._part(backend, url, start, min(start + part, size), size, fd, policy, stats)
            )
            for start in range(0, size, part)
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # every write thread is done
            os.close(fd)
            discard(dest)
            raise
        os.close(fd)
        return size

    async def _part(
        self,
        backend: Backend,
        url: str,
        start: int,
        end: int,
        size: int,
        fd: int,
        policy: RetryPolicy,
        stats: RetryStats,
    ) -> None:
        # A backend that streams holds a gathered piece at a time; one that cannot, the whole part.
        streams = type(backend).read_range_into is not Backend.read_range_into
        held = min(end - start, WRITE_GATHER + CHUNK_SIZE) if streams else end - start
        async with self._buffer.hold(held), self._slots:
            read = lambda: self._read(backend, url, start, end, size, fd)  # noqa: E731 - a fresh attempt per call
            await with_retries(policy, read, url=url, stats=stats, what="range download")
        self.parts += 1

    async def _read(self, backend: Backend, url: str, start: int, end: int, size: int, fd: int) -> None:
        asked = end + 1 if end == size else end  # one byte past the end: is the object longer?
        writer = _PartWriter(fd, start, end)
        request = self.gauge.begin()
        received = 0
        try:
            with self.gauge.receiving(request):
                received = await backend.read_range_into(url, start, asked, writer)
            await writer.flush()
        finally:
            self.gauge.end(request, received)  # a failed attempt frees its connection, unmeasured
        # The backends raise TransientStorageError for a body cut short of its announced length. A
        # complete answer of another length is retried too (a hop may cut a body and lower its
        # Content-Length); if it persists, with_retries makes it a FormatError: the object differs.
        if received != end - start:
            raise WrongLength(
                f"{redact(url)}: the object is not the {size} bytes the index lists: bytes "
                f"[{start}, {asked}) came back as {received} bytes",
                url=redact(url),
            )
        self.observe(received, request.body_seconds(self._clock()))


class _PartWriter:
    """The sink of one attempt at a part: writes what arrives at the part's offsets, in gathered pieces
    (nothing past the part's end: the byte asked past an object's end only shows it is longer)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd = fd
        self._offset = start  # where the pending bytes go
        self._end = end
        self._pending = bytearray()

    async def __call__(self, chunk: bytes) -> None:
        room = self._end - self._offset - len(self._pending)
        if room > 0:
            self._pending += chunk[:room] if len(chunk) > room else chunk
        if len(self._pending) >= WRITE_GATHER:
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending (waited for to its end even when cancelled: the descriptor is closed
        right after the download)."""
        if not self._pending:
            return
        data, self._pending = self._pending, bytearray()
        await settle(asyncio.ensure_future(asyncio.to_thread(_write_at, self._fd, data, self._offset)))
        self._offset += len(data)


class _ByteBudget:
    """Waits until ``nbytes`` fit under a total (first come, first served; one event loop)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        nbytes = min(nbytes, self.total)  # one part larger than the whole budget still goes, alone
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + nbytes <= self.total)
            self.used += nbytes
        try:
            yield
        finally:
            async with self._changed:
                self.used -= nbytes
                self._changed.notify_all()


def _write_at(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
