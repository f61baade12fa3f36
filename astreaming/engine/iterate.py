"""Walk a worker's plan: wait for each shard once, then decode its samples in the consumer's thread.

Only shard readiness crosses threads (DESIGN §2): the consumer checks readiness when the plan moves to
another shard and otherwise reads straight from the mapped file. With a ``cache_limit``, the shard being
read is pinned (no process on the node evicts it) and readers of evicted shards are closed at the next
shard switch; a shard found evicted (by any process) is fetched again.

The hot loop works on *segments*: runs of plan positions in one shard (at most ``_AT_EVERY`` long),
also cut where the consumer has something to report. A segment is decoded in one call (the MDS reader's
``get_many``, a loop without a Python call per sample) and the sync iterator chains the segments in C,
so a cached sequential epoch costs little more than the decoder itself. The position goes to
the scheduler (a cross-thread call that wakes the loop thread) only where it can start a download: at
each "trigger", the first position within ``predownload`` of a shard's first need, and before waiting.

A batch walk may ask to be told before it waits for a download (:data:`DOWNLOAD_WAIT`): a DataLoader
worker then sends the batches it holds before waiting, instead of holding them behind the download.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sized
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from astreaming.engine.nextepoch import NextEpochHint
from astreaming.engine.planfeed import (
    Chunk,
    PlanFeed,
    WindowNextUse,
    first_needs,
    next_plan_shards,
    plan_extent,
    shards_of,
    window_shards,
)
from astreaming.engine.ranges import RangeSampler
from astreaming.engine.readers import RELEASE_EVERY, ReaderCache
from astreaming.engine.runtime import Runtime, SyncRuntime
from astreaming.engine.shards import ShardTable
from astreaming.errors import AstreamingError, FormatError
from astreaming.format.reader import ShardReader

__all__ = [
    "DOWNLOAD_WAIT",
    "DownloadWait",
    "aiter_plan",
    "batch_decoder",
    "drop_forgotten",
    "first_needs",
    "forget_shard",
    "iter_plan",
    "iter_plan_batches",
    "segments",
    "shards_of",
    "sorted_unique",
    "triggers",
]

T = TypeVar("T")

#: Decodes the samples at a list of indices of one shard.
Decoder = Callable[[list[int]], Iterable[dict[str, Any]]]

#: A worker's plan: chunks of sample ids in yield order (``LazyWorkerPlan``), or one array.
Plan = Iterable[npt.NDArray[np.int64]] | npt.NDArray[np.int64]
#: Under a cache limit, look for readers of files evicted by other processes every this many shard switches.
_PRUNE_EVERY = 256
#: Update the consumer position seen by cache eviction ("furthest next use") at least this often.
_AT_EVERY = 64


class DownloadWait:
    """The type of :data:`DOWNLOAD_WAIT` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DOWNLOAD_WAIT"


#: Yielded by :func:`iter_plan_batches` with ``announce_waits`` just before the walk waits for a shard
#: that must be downloaded: neither ready in this process nor published in the cache, from a remote
#: that is not a local directory. Nothing is yielded before waits that need no network (a shard
#: published by any process, or being copied from a local remote), so a local dataset never sees it.
DOWNLOAD_WAIT = DownloadWait()


def triggers(first: npt.NDArray[np.int64], predownload: float | None) -> npt.NDArray[np.int64]:
    """Plan positions where reporting the consumer's position lets the scheduler start a shard.

    The scheduler starts a shard once ``first_need <= position + predownload``; the positions at or
    before 0 need no report (a plan starts at position 0).
    """
    if predownload is None or math.isinf(predownload):
        return np.empty(0, np.int64)
    points = first - int(predownload)
    return sorted_unique(points[points > 0])


def sorted_unique(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``np.unique`` of an int array, without its first-call import of ``numpy.ma`` (0.1-0.6 s of a
    first sample on a loaded machine)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def segments(
    shards: npt.NDArray[np.int64],
    start: int,
    cuts: npt.NDArray[np.int64],
    *,
    every: int = _AT_EVERY,
    align: int = 0,
) -> tuple[list[int], list[int], list[int]]:
    """Split ``shards`` (plan positions ``start``..) into runs of one shard, also cut at ``cuts``.

    ``cuts`` are sorted plan positions. Every run is also cut at each multiple of ``every`` (0: no such
    cut) and at each plan position that is a multiple of ``align`` (0: none). Returns the start and end
    offsets of each run within ``shards`` and its shard.
    """
    n = len(shards)
    change = np.flatnonzero(shards[1:] != shards[:-1]) + 1
    lo, hi = np.searchsorted(cuts, [start + 1, start + n])
    inside = cuts[lo:hi] - start
    parts = [np.zeros(1, np.int64), change, inside]
    if every:
        parts.append(np.arange(every, n, every))
    if align:
        parts.append(np.arange((-start) % align, n, align))
    bounds = sorted_unique(np.concatenate(parts))
    begins = bounds.tolist()
    return begins, [*begins[1:], n], shards[bounds].tolist()


def drop_forgotten(runtime: Runtime, readers: ReaderCache) -> None:
    """Close the readers of the shards ``runtime.readiness`` forgot since the last call.

    Walks call it at each shard switch, random access at each read. Whichever takes a shard, the others
    stay safe: a forgotten shard is no longer ready, so every consumer waits for it (a new fetch) before
    reading it again, and a read pins its shard or catches its missing file (see :func:`forget_shard`).
    """
    for shard in runtime.readiness.take_forgotten():
        readers.drop(shard)


def forget_shard(runtime: Runtime, readers: ReaderCache, shard: int) -> None:
    """A consumer found ``shard``'s files gone (evicted by any process after it was ready): close its
    reader and forget it, so that the next wait fetches it again instead of returning at once."""
    readers.drop(shard)
    runtime.readiness.forget(shard)


class _Walk:
    """Consumer-side bookkeeping shared by the sync and async walks (no I/O, no waiting).

    Whether a shard is ready is asked of ``runtime.readiness`` (its one owner); the walk keeps only what
    it holds: the pinned shard and its file's inode.
    """

    def __init__(self, runtime: Runtime, readers: ReaderCache) -> None:
        self.runtime = runtime
        self.readers = readers
        self.is_ready = runtime.readiness.is_ready
        self.pinned = -1
        self.inode: int | None = None  # of the pinned shard's file
        self.switches = 0

    def leave(self) -> None:
        """Unpin the shard being left and close the readers of shards forgotten meanwhile."""
        pins = self.runtime.pins
        if pins is not None and self.pinned >= 0:
            pins.unpin(self.pinned)
            self.switches += 1
            if self.switches % _PRUNE_EVERY == 0:
                self.readers.prune_replaced()
                pins.prune()
        self.pinned, self.inode = -1, None
        drop_forgotten(self.runtime, self.readers)

    def enter(self, shard: int) -> bool:
        """Whether ``shard`` can be read now; pins it when a cache limit could evict it."""
        if not self.is_ready(shard) and not self._present(shard):
            return False
        pins = self.runtime.pins
        if pins is None or not self.runtime.evictable[shard]:
            return True
        inode = pins.pin(shard)
        if inode is not None:
            self.pinned, self.inode = shard, inode
            return True
        # Evicted (by any process on the node) between "ready" and the pin: fetch it again.
        forget_shard(self.runtime, self.readers, shard)
        return False

    def _present(self, shard: int) -> bool:
        """Without a cache limit, a shard whose raw files are all in the cache is ready: marked so here.

        That is all the scheduler's fetch of such a shard does (files are published whole, by rename),
        and asking it costs a round trip to the loop thread, which also holds the GIL while it starts
        fetches: a cached 200 MB epoch of 20 shards waited 2.8 ms of its 60 ms in four of them. Under a
        limit the fetch also records the shard in the node's ledger: ask it then.
        """
        core = self.runtime
        if core.budget is not None or not core.table.is_local(shard):  # random access reads such shards too
            return False
        if core.evictable[shard] and not core.scheduler.is_wanted(shard):
            core.found_present += 1  # a cache hit the scheduler was not asked for (see _to_fetch)
        core.readiness.mark_ready(shard)
        return True

    def open(self, shard: int) -> ShardReader | None:
        """The reader of the entered shard, or None if its files vanished meanwhile (fetch it again).

        Without a cache limit nothing pins a shard, so another process's eviction can remove a file
        this process was about to map: that is a re-fetch, not an error, as long as the shard is not
        source data (whose absence is an error worth raising).
        """
        try:
            return self.readers.get(shard, inode=self.inode)
        except FormatError:
            if not self.runtime.evictable[shard] or self.runtime.table.is_local(shard):
                raise
        if self.pinned == shard:
            self.leave()
        forget_shard(self.runtime, self.readers, shard)
        return None

    def at(self, position: int) -> None:
        self.runtime.next_use.advance(position)


def _local(table: ShardTable, chunk: Chunk) -> npt.NDArray[np.int64]:
    """Each sample's index within its shard. Made Python ints a segment at a time (the decoders index
    with them): a chunk's list of ints took 36 bytes a sample, 2.3 MB for a 64k-sample chunk."""
    local: npt.NDArray[np.int64] = chunk.ids - table.bounds[chunk.shards]
    return local


def _start(
    runtime: Runtime, first: Chunk | None, ahead: Chunk | None, extent: tuple[int, int] | None = None
) -> None:
    """On the loop: a new plan wants the shards of its first two chunks (positions restart at 0)."""
    parts = [c for c in (_to_fetch(runtime, first), _to_fetch(runtime, ahead)) if c is not None]
    order = np.concatenate([c.order for c in parts]) if parts else np.empty(0, np.int64)
    positions = np.concatenate([c.first for c in parts]) if parts else np.empty(0, np.int64)
    # The plan's shards per position only feed cache_limit eviction ("furthest next use").
    shards = window_shards(first, ahead) if runtime.budget is not None else np.empty(0, np.int64)
    runtime.enqueue(shards, order, positions, extent)


def _slide(runtime: Runtime, current: Chunk | None, ahead: Chunk | None, beyond: list[Chunk]) -> None:
    """On the loop: the walk entered ``current``; want the shards of ``ahead``, the chunk after it.

    Eviction (and the needs this process publishes to the node) also sees the chunks ``beyond``.
    """
    wanted = _to_fetch(runtime, ahead)
    if wanted is not None:
        runtime.scheduler.want_many(wanted.order.tolist(), wanted.first.tolist())
    if runtime.budget is not None and current is not None:
        runtime.window(WindowNextUse(window_shards(current, ahead, *beyond), current.start))


def _to_fetch(runtime: Runtime, chunk: Chunk | None) -> Chunk | None:
    """``chunk`` as the scheduler is asked for it ahead of the walk: without a cache limit, only the
    shards a fetch would bring in - of streams with a remote, and not in the cache already.

    The others the walk opens itself (``_Walk._present``), and it asks for one only if it is missing
    then (a local-only stream's fetch raises the error naming the file; a remote one downloads it).
    Wanting them ahead only had the loop thread run a fetch task per shard that checked the file and
    marked it ready, holding the GIL the walk was waiting for: 9-12 ms of loop-thread CPU in a 90 ms
    cached epoch of 20 local shards, 180-210 ms in a 250 ms epoch of 1,192 cached 4 KB shards of a
    remote (one ``stat`` a file here instead). Under a cache limit every shard is asked for, as the
    node's ledger records them.
    """
    if chunk is None or runtime.budget is not None:
        return chunk
    keep = runtime.remote_shards[chunk.order]
    is_local = runtime.table.is_local
    for at in np.flatnonzero(keep).tolist():
        keep[at] = not is_local(int(chunk.order[at]))
    return dataclasses.replace(chunk, order=chunk.order[keep], first=chunk.first[keep])


def _beyond(runtime: Runtime, feed: PlanFeed, current: Chunk | None) -> list[Chunk]:
    """Under a cache limit, the chunks after the walk's two that reach ``needs_window`` positions past
    ``current``'s start (computed in the consumer's thread, as every chunk is)."""
    if runtime.budget is None or current is None:
        return []
    return feed.beyond(current.start + runtime.needs_window)


def _next_epoch(
    runtime: Runtime, table: ShardTable, plan: Plan, deliver: Callable[[npt.NDArray[np.int64]], None]
) -> NextEpochHint | None:
    """Under a cache limit, the lookup of the shards the next epoch starts with (once per walk, on a
    thread of its own: see :mod:`astreaming.engine.nextepoch`); ``deliver`` hands them to the runtime."""
    if runtime.budget is None:
        return None
    positions = runtime.later_positions
    extent = plan_extent(plan)
    return NextEpochHint.for_plan(lambda: next_plan_shards(table, plan, positions), deliver, extent)


async def _on_loop(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


def iter_plan(
    table: ShardTable,
    readers: ReaderCache,
    runtime: SyncRuntime,
    plan: Plan,
    *,
    ranges: RangeSampler | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the samples of ``plan`` in order, fetching shards ahead on the loop thread.

    The plan's chunks are computed one ahead of the walk (the scheduler wants their shards then).

    The samples come from a chain of per-segment ``map`` iterators, so the Python code of the walk runs
    once per segment, not per sample. Closing or dropping the returned iterator closes the walk (its
    ``finally`` runs when the chain releases it).

    With ``ranges``, the walk's first sample may be read by byte ranges while its shard downloads
    whole (see :class:`_EarlySample`).
    """
    segments = _decoded_segments(table, readers, runtime, plan, batch_decoder, ranges=ranges)
    # Without announce_waits the walk yields no DOWNLOAD_WAIT: only decoded segments.
    return itertools.chain.from_iterable(cast(Iterator[Iterable[dict[str, Any]]], segments))


def iter_plan_batches(
    table: ShardTable,
    readers: ReaderCache,
    runtime: SyncRuntime,
    plan: Plan,
    *,
    batch_size: int,
    decoder: Callable[[ShardReader], Callable[[list[int]], Sized]],
    ranges: RangeSampler | None = None,
    announce_waits: bool = False,
) -> Iterator[list[Any] | DownloadWait]:
    """The samples of ``plan`` in batches of ``batch_size`` consecutive plan positions (the last one may
    be shorter), each batch as the list of what ``decoder(reader)(indices)`` returned for its segments.

    Segments are cut at the batch boundaries, so each batch is decoded in as few calls as it has shards
    (one, mostly), and each piece while its shard is pinned.

    With ``announce_waits``, :data:`DOWNLOAD_WAIT` is yielded (between batches, or within a batch that
    spans shards: the batch then follows once its other shard is ready) each time the walk is about to
    wait for a download, so that the consumer may hand on what it holds first. Resuming the walk waits.
    """
    pieces: list[Any] = []
    filled = 0
    segments = _decoded_segments(
        table, readers, runtime, plan, decoder, batch_size, ranges=ranges, announce_waits=announce_waits
    )
    for piece in segments:
        if isinstance(piece, DownloadWait):
            yield piece
            continue
        pieces.append(piece)
        filled += len(piece)
        if filled >= batch_size:
            yield pieces
            pieces, filled = [], 0
    if pieces:
        yield pieces


def _decoded_segments(
    table: ShardTable,
    readers: ReaderCache,
    runtime: SyncRuntime,
    plan: Plan,
    decoder: Callable[[ShardReader], Callable[[list[int]], T]],
    align: int = 0,
    *,
    ranges: RangeSampler | None = None,
    announce_waits: bool = False,
) -> Iterator[T | list[dict[str, Any]] | DownloadWait]:
    """The decoded samples of each segment, each handed out once its shard is ready.

    The next segment is prepared (previous shard unpinned, next one waited for) only after the chain
    exhausted the previous one, so a shard stays pinned while its samples are decoded. With ``align``,
    segments are also cut at the plan positions that are multiples of it; the cuts that only serve
    cache eviction (every ``_AT_EVERY`` positions) are then made only under a cache limit. With
    ``announce_waits``, :data:`DOWNLOAD_WAIT` comes before each wait for a download (once per shard
    switch).
    """
    # Chunks are computed here, in the consumer's thread; only the shard facts go to the loop.
    feed = PlanFeed(table, plan)
    core, call = runtime.runtime, runtime.loop_thread.call
    chunk = feed.next()
    late = _in_place(core, chunk)  # the look-ahead chunk is computed once this one is handed out
    ahead = feed.next() if chunk is not None and not late else None
    call(_on_loop(_start, core, chunk, ahead, plan_extent(plan)))

    def slide(current: Chunk | None, ahead: Chunk | None, beyond: list[Chunk]) -> None:
        if core.budget is None:
            # Only the scheduler's wants: nothing the walk must wait for, and a blocking round trip cost
            # 0.2-1.5 ms a chunk (the loop thread keeps the GIL while it starts the fetches it is handed).
            wanted = _to_fetch(core, ahead)
            if wanted is not None and len(wanted.order):
                runtime.loop_thread.call_soon(_slide, core, current, wanted, beyond)
        else:  # eviction's window moves before the walk reads on
            call(_on_loop(_slide, core, current, ahead, beyond))

    waiter = runtime.waiter
    walk = _Walk(core, readers)
    predownload = core.predownload
    report: list[int] = []  # pending trigger positions, the next one last
    for c in (chunk, ahead):
        report = _add_triggers(core, report, c, predownload)
    current, decode = -1, _not_open(decoder)
    weight, spent = 0, 0  # bytes per sample of the current shard; bytes decoded since the last release
    every = _AT_EVERY if not align or core.budget is not None else 0
    early = _EarlySample(table, runtime, ranges) if ranges is not None else None
    hint = _next_epoch(core, table, plan, functools.partial(runtime.loop_thread.call_soon, core.expect_next))
    try:
        while chunk is not None:
            start, local = chunk.start, _local(table, chunk)
            cuts = np.asarray(report[::-1], np.int64)
            cut = segments(chunk.shards, start, cuts, every=every, align=align)
            for begin, end, shard in zip(*cut, strict=True):
                position = start + begin
                if shard != current:
                    walk.leave()
                    walk.at(position)
                    reader = None
                    announce = announce_waits
                    while reader is None:
                        if walk.enter(shard):
                            reader = walk.open(shard)
                            continue
                        # Report the position first: the scheduler only starts shards within the
                        # look-ahead of the last reported position.
                        waiter.advance(position)
                        if announce and _downloads(core, table, shard):
                            # The consumer hands on what it holds; the shard may be ready when it
                            # resumes the walk (check again, announce once).
                            announce = False
                            yield DOWNLOAD_WAIT
                            continue
                        if early is not None:
                            sample, early = early.take(shard, int(local[begin])), None
                            if sample is not None:
                                yield [sample]
                                begin += 1
                        if late and core.evictable[shard]:  # gone after all: look-ahead downloads start now
                            late, ahead = False, feed.next()
                            slide(chunk, ahead, [])
                            report = _add_triggers(core, report, ahead, predownload)
                        waiter.wait_ready(shard, position)
                    decode, current, weight = decoder(reader), shard, readers.weight(shard)
                if report and position >= report[-1]:
                    while report and position >= report[-1]:
                        report.pop()
                    waiter.advance(position)
                walk.at(position)
                if begin < end:
                    yield decode(local[begin:end].tolist())
                    spent += (end - begin) * weight
                    if spent >= RELEASE_EVERY:
                        readers.release_pages(keep=current)
                        spent = 0
            if hint is not None and hint.due(chunk.stop):
                hint.start()  # the next epoch's first shards, off this thread
            if late:  # the look-ahead computed only now: the chunk after the first is wanted first
                late, ahead = False, feed.next()
                slide(chunk, ahead, [])
                report = _add_triggers(core, report, ahead, predownload)
            chunk, ahead = ahead, feed.next()
            slide(chunk, ahead, _beyond(core, feed, chunk))
            report = _add_triggers(core, report, ahead, predownload)
        feed.complete()
        if hint is not None:
            hint.finish()  # delivered (on the loop) before the plan ends
        call(_on_loop(core.end_plan))
    finally:
        if hint is not None:
            hint.cancel()  # stopped early: a lookup still running delivers nothing
        walk.leave()
        # Stopped early or finished: nothing queued for this plan is needed any more (other requests
        # on the same scheduler, such as random access, are left alone).
        waiter.cancel_many(sorted(feed.wanted))


def _downloads(core: Runtime, table: ShardTable, shard: int) -> bool:
    """Whether making ``shard`` ready (it is not) takes a download: its stream has a remote that is not
    a local directory, and no process published the shard in the cache (a fetch of a published shard
    only finds its files)."""
    if not core.evictable[shard]:  # no remote: the shard is source data in the local directory
        return False
    if core.backend(int(table.stream_per_shard[shard]))[0].is_local_filesystem:
        return False
    return not table.is_local(shard)


#: A shard at least this large is not waited for whole before a walk's first sample (see _EarlySample):
#: below it, the two round trips of the range reads cost about what the rest of the shard does.
EARLY_MIN_BYTES = 1 << 20


class _EarlySample:
    """A walk's first sample, read by byte ranges (the offsets table, then the sample) while its shard
    still downloads whole: the first sample then waits for two small requests instead of the shard.

    Used once per walk, and only for an uncompressed MDS shard of at least ``EARLY_MIN_BYTES`` on a
    remote store (not a local path) that is neither cached nor ready (no hash to verify: see
    ``RangeSampler.eligible``).
    """

    def __init__(self, table: ShardTable, runtime: SyncRuntime, ranges: RangeSampler) -> None:
        self.table = table
        self.runtime = runtime
        self.ranges = ranges

    def take(self, shard: int, index: int) -> dict[str, Any] | None:
        """Sample ``index`` of ``shard`` by ranges, or None where the shard is better waited for."""
        core = self.runtime.runtime
        stream_id = int(self.table.stream_per_shard[shard])
        if (
            self.table.streams[stream_id].stream.remote_root is None
            or core.backend(stream_id)[0].is_local_filesystem  # a local copy takes no round trips
            or not self.ranges.eligible(shard)
            or self.table.entries[shard].raw_data.bytes < EARLY_MIN_BYTES
            or core.readiness.is_ready(shard)
            or self.table.is_local(shard)
        ):
            return None
        try:
            return self.runtime.loop_thread.call(self.ranges.sample(core, shard, index))
        except AstreamingError:
            return None  # waiting for the whole shard reports its own failure, if any


def _in_place(runtime: Runtime, chunk: Chunk | None) -> bool:
    """Whether a walk may compute its look-ahead chunk only once ``chunk``, its first, is handed out.

    The look-ahead exists to start downloads (and, under a cache limit, to tell eviction what comes
    next) while the first chunk is read. Where every shard of the first chunk is in place and there is
    no cache limit, it has nothing to start yet, and computing it first would make the first batch wait
    for two more batches of plan: for a py1e resume, one span shuffle per shard they touch (about 10 ms
    for a batch of 32 from 10,000-sample shards).
    """
    if chunk is None or runtime.budget is not None:
        return False
    ready, evictable = runtime.readiness.is_ready, runtime.evictable
    return all(ready(shard) or not evictable[shard] for shard in chunk.order.tolist())


def _add_triggers(
    runtime: Runtime, report: list[int], chunk: Chunk | None, predownload: float | None
) -> list[int]:
    """``report`` (descending) with the trigger positions of ``chunk``'s shards to fetch merged in."""
    chunk = _to_fetch(runtime, chunk)
    if chunk is None:
        return report
    merged: set[int] = {*report, *triggers(chunk.first, predownload).tolist()}
    return sorted(merged, reverse=True)


def batch_decoder(reader: ShardReader) -> Decoder:
    """The fastest way to decode a run of samples of ``reader``: MDS readers decode a list in one loop
    (``get_run``: one read of the run's bytes where they lie together, see ``mds/reader.py::_run_reader``;
    a hooked reader's ``get_many``), other formats map ``get_item``."""
    many: Decoder | None = getattr(reader, "get_run", None) or getattr(reader, "get_many", None)
    return many if many is not None else functools.partial(map, reader.get_item)


def _not_open(decoder: Callable[[ShardReader], Callable[[list[int]], T]]) -> Callable[[list[int]], T]:
    """The decode function before the first shard is open (unreachable: the first segment opens one)."""

    def decode(indices: list[int]) -> T:
        raise AssertionError("no shard reader is open")

    return decode


async def aiter_plan(
    table: ShardTable, readers: ReaderCache, runtime: Runtime, plan: Plan
) -> AsyncIterator[dict[str, Any]]:
    """The async twin of :func:`iter_plan`, on the caller's loop (no thread)."""
    feed = PlanFeed(table, plan)
    chunk = feed.next()
    late = _in_place(runtime, chunk)  # as in _decoded_segments
    ahead = feed.next() if chunk is not None and not late else None
    _start(runtime, chunk, ahead, plan_extent(plan))
    scheduler = runtime.scheduler
    walk = _Walk(runtime, readers)
    current, decode = -1, _not_open(batch_decoder)
    weight, spent = 0, 0  # as in _decoded_segments
    loop = asyncio.get_running_loop()

    def deliver(later: npt.NDArray[np.int64]) -> None:
        # From the lookup's thread: off the caller's event loop too (it would block it for as long).
        loop.call_soon_threadsafe(runtime.expect_next, later)

    hint = _next_epoch(runtime, table, plan, deliver)
    try:
        while chunk is not None:
            start, local = chunk.start, _local(table, chunk)
            # Same loop thread as the scheduler: reporting the position is a plain call, so no triggers.
            for begin, end, shard in zip(*segments(chunk.shards, start, np.empty(0, np.int64)), strict=True):
                position = start + begin
                if shard != current:
                    walk.leave()
                    walk.at(position)
                    reader = None
                    while reader is None:
                        if walk.enter(shard):
                            reader = walk.open(shard)
                            continue
                        scheduler.advance(position)
                        if late and runtime.evictable[shard]:
                            late, ahead = False, feed.next()
                            _slide(runtime, chunk, ahead, [])
                        await scheduler.wait(shard, position)
                    decode, current, weight = batch_decoder(reader), shard, readers.weight(shard)
                scheduler.advance(position)
                walk.at(position)
                for sample in decode(local[begin:end].tolist()):
                    yield sample
                spent += (end - begin) * weight
                if spent >= RELEASE_EVERY:
                    readers.release_pages(keep=current)
                    spent = 0
            if hint is not None and hint.due(chunk.stop):
                hint.start()
            if late:
                late, ahead = False, feed.next()
                _slide(runtime, chunk, ahead, [])
            chunk, ahead = ahead, feed.next()
            _slide(runtime, chunk, ahead, _beyond(runtime, feed, chunk))
        feed.complete()
        if hint is not None:
            await hint.afinish()
        runtime.end_plan()
    finally:
        if hint is not None:
            hint.cancel()
        walk.leave()
        scheduler.cancel_many(sorted(feed.wanted))
