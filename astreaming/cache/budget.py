"""``cache_limit`` across the node: reservations, furthest-next-use eviction and the minimum budget.

One :class:`NodeBudget` per process and dataset, over the node-wide :class:`~astreaming.cache.ledger.Ledger`
of the dataset's cache directories: every rank, DataLoader worker and job sharing a directory sees the
same resident bytes, reservations and needs, so ``cache_limit`` holds for the directory as a whole.

* A download ``reserve`` s its peak footprint (zip plus raw) before it starts and ``commit`` s the real
  size once its files are published; a shard another process is already bringing in costs nothing.
* Eviction picks, among resident, evictable shards that nobody is downloading, the one whose next use is
  furthest away: this process knows its whole plan, others publish the shards they need soon (and their
  position); a shard nobody needs soon goes first, least recently used first. A pinned shard (a reader
  holds its shared ``flock``, see :mod:`astreaming.cache.pins`) is never deleted, and data of a stream
  without a remote is never in the ledger at all.
* A look-ahead download (``distance > 0``) only evicts shards needed later than itself and than
  ``protect_within`` positions: shards in use go out of use before the
  look-ahead shard is needed and free its room, where evicting a live one costs a second download. It
  also leaves room for this process's sooner shards not cached yet and for the next shards of the node's
  other readers (``lookahead_headroom``); if that does not make room it is refused (the caller retries
  later) rather than thrash. Nor does it displace the next epoch's first shards (``LATER`` needs, kept
  over shards nobody needs): they would be the only shards it may take, and it would take them all
  before the epoch ends. The shard the consumer is waiting for may evict anything unpinned, and
  waits for pins to go if it must.
* A waiting consumer leaves a shard another process needs within ``yield_within`` to that process
  for up to ``yield_for`` seconds, as long as that process is not itself waiting for room: evicting
  it would only make that reader download it again moments later (two readers of one node taking
  turns evicting each other's next shard). Never to a waiting process, so two readers that each need
  the other's next shard cannot wait for each other; and never longer than ``yield_for``, so a reader
  that stopped consuming (a DataLoader worker whose queue is full while the loader waits for its
  sibling's batch) stalls the others only that long. Five shards, room for four, the default shuffle and
  2 DataLoader workers: 42-47 downloads an epoch, about what one process makes, against 59-78 without.
* A waiting consumer also leaves a shard to a process that lags behind it (less ``progress``: epochs
  plus the share of the current one) and needs that shard in its current epoch, as long as that process
  moved within ``stall_after`` seconds, for up to ``couple_for`` seconds per shard. Only ever to a
  process behind, so these waits cannot form a cycle (a lagging process waiting for room is waited for:
  it waits for nobody ahead of it). Two jobs on one cache then stay within what the cache holds of each
  other: the lagging one reads what the leading one brought in, instead of both downloading everything
  (a leading job that evicts the lagging one's next shards makes it download them again, and the gap
  never closes). A paused job stops moving and is not waited for after ``stall_after``; a slow one
  costs the fast one at most ``couple_for`` per shard. Only a process more than ``couple_gap`` of an
  epoch behind is waited for: the ranks and DataLoader workers of one job stay closer than that (torch
  takes their batches in turn), and waiting among them, for shards the ``yield_for`` rule already
  covers, made a node test (2 ranks x 2 workers, 25% limit) take 187 s where it took 40 s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from astreaming.cache.ledger import FileRow, Ledger, LedgerKey
from astreaming.cache.nextuse import LATER
from astreaming.cache.pins import exclusive
from astreaming.cache.procid import process_tag
from astreaming.cache.publish import FileLock, remove_stale_temps
from astreaming.errors import CacheError, ConfigError

__all__ = ["BudgetStatistics", "NodeBudget", "check_cache_limit", "file_sizes", "required_bytes"]

T = TypeVar("T")

#: mosaic 0.13 requires the limit to hold this many of the largest shard (PR #420).
MIN_LARGEST_SHARDS = 4
#: Seconds between sweeps for dead processes when room is short.
_SWEEP_EVERY = 1.0


def check_cache_limit(cache_limit: int | None, *, index_bytes: int, largest_shard_bytes: int) -> None:
    """Refuse a ``cache_limit`` that cannot work, like mosaic does at init.

    Args:
        cache_limit: Bytes, or ``None`` for no limit.
        index_bytes: Total size of the streams' ``index.json`` files.
        largest_shard_bytes: The largest shard footprint (raw plus compressed, as both exist while
            decompressing).

    Raises:
        ConfigError: naming ``cache_limit`` and the sizes it must exceed.
    """
    if cache_limit is None:
        return
    if cache_limit <= index_bytes:
        raise ConfigError(
            f"cache_limit={cache_limit} bytes must exceed the total size of the index files "
            f"({index_bytes} bytes)"
        )
    needed = MIN_LARGEST_SHARDS * largest_shard_bytes
    if cache_limit < needed:
        raise ConfigError(
            f"cache_limit={cache_limit} bytes must be at least {MIN_LARGEST_SHARDS} x the largest shard "
            f"({largest_shard_bytes} bytes raw+zip), i.e. >= {needed} bytes"
        )


def required_bytes(*, fixed: int, largest_raw: int, largest_footprint: int, readers: int) -> int:
    """The smallest budget with which ``readers`` processes can always make progress.

    Each reader pins at most the shard it reads (it unpins before waiting for the next), so while one
    downloads its next shard the others may pin one each: ``fixed + (readers - 1) * largest_raw +
    largest_footprint``.
    """
    return fixed + max(0, readers - 1) * largest_raw + largest_footprint


def file_sizes(paths: Iterable[os.PathLike[str] | str]) -> int:
    """Sum of the actual sizes of the files that exist among ``paths``."""
    total = 0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(p).st_size
    return total


#: How far behind (in epochs) a process must be before a leading consumer waits for it (module notes).
#: A constant, not the cache's share of an epoch: it only has to be above the spread of one job's ranks
#: and workers (waiting among them made a node test 8x slower) and below the share of any useful limit
#: (the benchmarks' 15-50%). In 20 soak runs (results/cache_limit_soak_s7.json) what decided the bytes
#: was how far behind a job started, not who is waited for: within 0.32 epoch, at most 2.97x the dataset;
#: 0.45 epoch or more behind, about 5x, as the leader waits at most ``couple_for`` per shard.
COUPLE_GAP = 0.1


@dataclass(frozen=True)
class BudgetStatistics:
    """A snapshot of the node-wide budget as this process sees it.

    Attributes:
        limit: This process's ``cache_limit``.
        usage: Bytes resident or reserved in the dataset's cache directories (every process), plus the
            ledger's own files and this dataset's source data that is never evicted.
        evictions: Shards this process evicted.
        evicted_bytes: Their bytes.
        deferrals: Look-ahead downloads refused because only sooner-needed shards could have made room.
        yields: Times this process's waiting consumer left a shard to a reader needing it sooner.
        couplings: Times it left a shard to a process lagging behind it (see the module's notes).
    """

    limit: int
    usage: int
    evictions: int
    evicted_bytes: int
    deferrals: int
    yields: int = 0
    couplings: int = 0


class NodeBudget:
    """One process's view of a node-wide ``cache_limit``.

    Args:
        limit: ``cache_limit`` in bytes.
        ledger: The ledger of the dataset's cache directories.
        keys: The ledger key of each shard, or None for a shard that is never evicted (a stream without
            a remote: its bytes are part of ``fixed``).
        fixed: Bytes counted but never in the ledger (source data of streams without a remote).
        indexes: ``(key, bytes)`` of each cached ``index.json``: counted, never evicted.
        next_use: This process's plan position next needing a shard (``inf``: never).
        position: This process's current plan position.
        on_evict: Called with each shard of this dataset that this process evicted.
        clock: Monotonic seconds (injectable); sleep: the async sleep (injectable).
        stuck_timeout: Seconds the shard the consumer waits for may find no room before CacheError.
        lookahead_headroom: Bytes a look-ahead download must leave free (for the next shards of the
            node's other readers): look-ahead that fills the last room is evicted again by their sooner
            needs, a download wasted.
        footprints: Peak bytes of each shard (zip plus raw), for ``sooner``.
        sooner: This process's shards needed within a distance, soonest first: a look-ahead download
            must leave room for those of them not yet in the cache, or the consumer's next shard
            would evict it again.
        protect_within: Plan positions: a look-ahead download never displaces a shard some process
            needs within this distance, even one
            needed later than itself. Until the look-ahead shard is needed, shards being read go
            out of use and free room for it; evicting a live one instead costs a second download.
        yield_for: Seconds a waiting consumer may leave a shard to another, non-waiting process that
            needs it within ``yield_within`` plan positions (default ``protect_within``; see the module's
            notes): a reader further from its need than it can run ahead of its siblings (a DataLoader
            worker's prefetched batches) would only be waited for until ``yield_for`` runs out.
    """

    def __init__(
        self,
        limit: int,
        ledger: Ledger,
        keys: Sequence[LedgerKey | None],
        *,
        fixed: int = 0,
        indexes: Sequence[tuple[LedgerKey, int]] = (),
        next_use: Callable[[int], float] = lambda shard: math.inf,
        position: Callable[[], float] = lambda: 0.0,
        on_evict: Callable[[int], None] = lambda shard: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stuck_timeout: float = 60.0,
        lookahead_headroom: int = 0,
        footprints: Sequence[int] = (),
        sooner: Callable[[float], list[int]] = lambda distance: [],
        protect_within: float = 0.0,
        yield_for: float = 0.3,
        yield_within: float | None = None,
        progress: Callable[[], float | None] = lambda: None,
        couple_for: float = 5.0,
        couple_gap: float = COUPLE_GAP,
        stall_after: float = 2.0,
        hint_slot: str | None = None,
        hint_ttl: float = 600.0,
    ) -> None:
        if limit <= 0:
            raise ConfigError(f"cache_limit must be positive, got {limit}")
        self.limit = limit
        self.ledger = ledger
        self.keys = keys
        self.fixed = fixed
        self.indexes = indexes
        self._next_use = next_use
        self._position = position
        self._on_evict = on_evict
        self._clock = clock
        self._sleep = sleep
        self.stuck_timeout = stuck_timeout
        self.lookahead_headroom = lookahead_headroom
        self._footprints = footprints
        self._sooner = sooner
        self.protect_within = protect_within
        self.yield_for = yield_for
        self.yield_within = protect_within if yield_within is None else yield_within
        # Shard the consumer waits for -> when it first left a victim to another reader.
        self._yielding: dict[int, float] = {}
        self._yields = 0
        self._progress = progress
        self.couple_for = couple_for
        self.couple_gap = couple_gap
        self.stall_after = stall_after
        # Shard the consumer waits for -> when it first left a victim to a lagging process.
        self._coupling: dict[int, float] = {}
        self._couplings = 0
        self.hint_slot = hint_slot
        self.hint_ttl = hint_ttl
        self._slot_claimed = False
        self._own = {(k.root, k.key): shard for shard, k in enumerate(keys) if k is not None}
        self._last_sweep = -math.inf
        self._evictions = 0
        self._evicted_bytes = 0
        self._deferrals = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_pid = -1

    # -- running ledger work off the event loop ------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a ledger operation on this budget's own thread, in submission order.

        Ledger transactions wait for a file lock other processes may hold, so they never run on the event
        loop. One thread keeps them in order: a release submitted after a reservation runs after it.
        """
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Queue a ledger operation on the budget's thread without waiting (e.g. a release in cleanup)."""
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="astreaming-ledger")
            self._executor_pid = os.getpid()
        return self._executor.submit(functools.partial(fn, *args, **kwargs))

    # -- registration --------------------------------------------------------------------------------
    def open(self) -> None:
        """Join the ledger: drop dead processes' rows, count the indexes, reconcile this dataset's files.

        A file published by a process that died before recording it is counted now; a row whose file
        is gone (a crash mid-eviction) is dropped.
        """
        with self.ledger.transaction() as conns:
            self._sweep(conns)
            for key, nbytes in self.indexes:
                self.ledger.record(conns, key, nbytes, evictable=False)
            recorded = {i: self.ledger.keys_recorded(conns, i) for i in range(len(conns))}
            for maybe in self.keys:
                if maybe is None:
                    continue
                key = maybe
                present = self._path(key).exists()
                known = key.key in recorded[key.root]
                if present and not known:
                    self.ledger.record(conns, key, self._size(key), evictable=True)
                elif known and not present:
                    self.ledger.forget(conns, key.root, key.key)

    def close(self, hints: Sequence[tuple[int, float]] = ()) -> None:
        """Leave the ledger (drops this process's reservations and needs) and stop the ledger thread.

        Args:
            hints: ``(shard, distance)`` the successor of this process's slot will need (a DataLoader
                worker ending its epoch: the next epoch's first shards). Left in the ledger, in the
                withdrawing transaction, for as long as this process's parent lives (it starts the
                successor), at most ``hint_ttl`` seconds, and only with a ``hint_slot``.
        """
        if self._executor is not None and self._executor_pid == os.getpid():
            self._executor.shutdown(wait=True)
        self._executor = None
        rows = [(k, at) for shard, at in hints if (k := self.keys[shard]) is not None]
        slot = self.hint_slot
        if slot is None or not rows:
            self.ledger.close()
            return
        anchor = process_tag(os.getppid())
        self.ledger.close(lambda conns: self.ledger.leave_hints(conns, slot, anchor, rows, ttl=self.hint_ttl))

    # -- accounting ----------------------------------------------------------------------------------
    def note_present(self, shard: int) -> None:
        """A shard found in the cache (published by anyone): make sure it is counted, and mark it used."""
        key = self.keys[shard]
        if key is None:
            return
        with self.ledger.transaction() as conns:
            # Checked under the ledger lock: no eviction can run between the check and the record.
            if not self._path(key).exists():
                return
            if self.ledger.resident_bytes(conns, key) is None:
                self.ledger.record(conns, key, self._size(key), evictable=True)
            else:
                self.ledger.touch(conns, [key])

    def try_reserve(self, shard: int, nbytes: int, *, distance: float) -> int | None:
        """Make room for ``nbytes`` of ``shard``, evicting shards needed later than ``distance``.

        Args:
            shard: The shard about to be downloaded.
            nbytes: Its peak footprint.
            distance: Plan positions until this process needs it (0: the consumer waits for it now).

        Returns:
            The bytes reserved: ``nbytes``, or 0 when the shard is resident or another process is
            bringing it in (then this process must not download it without reserving again); None if it
            does not fit now.

        Raises:
            CacheError: It can never fit: the shard is larger than the limit allows next to files that
                may not be evicted.
        """
        key = self.keys[shard]
        if key is None:
            return 0
        with self.ledger.transaction() as conns:
            ledger = self.ledger
            if ledger.resident_bytes(conns, key) is not None and not self._path(key).exists():
                ledger.forget(conns, key.root, key.key)  # a row left by a crash mid-eviction
            if ledger.resident_bytes(conns, key) is not None or ledger.reserved_by_others(conns, key):
                ledger.reserve(conns, key, 0)
                return 0
            usage = ledger.usage(conns) + self.fixed
            room = self.limit
            if distance > 0:
                room -= self.lookahead_headroom + self._missing_sooner(conns, shard, distance)
            if usage + nbytes > room:
                usage = self._make_room(
                    conns,
                    usage,
                    nbytes,
                    distance,
                    exclude=key,
                    room=room,
                    may_yield=self._may_yield(shard, distance),
                    may_couple=self._may_couple(shard, distance),
                )
            if usage + nbytes > room:
                if distance > 0:
                    self._deferrals += 1
                else:
                    ledger.set_waiting(conns, True)
                return None
            if distance <= 0:
                self._yielding.pop(shard, None)
                self._coupling.pop(shard, None)
                ledger.set_waiting(conns, False)
            ledger.reserve(conns, key, nbytes)
            return nbytes

    def _may_yield(self, shard: int, distance: float) -> bool:
        """Whether the consumer's reservation of ``shard`` may still leave victims to other readers."""
        if distance > 0 or self.yield_for <= 0:
            return False
        since = self._yielding.setdefault(shard, self._clock())
        return self._clock() - since < self.yield_for

    def _may_couple(self, shard: int, distance: float) -> bool:
        """Whether the consumer's reservation of ``shard`` may still leave victims to lagging processes."""
        if distance > 0 or self.couple_for <= 0:
            return False
        since = self._coupling.setdefault(shard, self._clock())
        return self._clock() - since < self.couple_for

    def _missing_sooner(self, conns: Sequence[sqlite3.Connection], shard: int, distance: float) -> int:
        """Bytes of the shards this process needs before ``distance`` that nobody has brought in yet."""
        total = 0
        for other in self._sooner(distance):
            key = self.keys[other]
            if other == shard or key is None or other >= len(self._footprints):
                continue
            present = self.ledger.resident_bytes(conns, key) is not None
            if not present and not self.ledger.reserved(conns, key):
                total += self._footprints[other]
        return total

    async def reserve(self, shard: int, nbytes: int, *, distance: float) -> int | None:
        """:meth:`try_reserve` for a download; the shard the consumer waits for waits for room.

        Returns:
            What :meth:`try_reserve` returned; None only for a look-ahead download (retry it later).

        Raises:
            CacheError: the shard the consumer waits for found no room for ``stuck_timeout`` seconds
                (pins of readers elsewhere fill the budget), or it can never fit.
        """
        delay = 0.002
        started = self._clock()
        while True:
            future = self.submit(self.try_reserve, shard, nbytes, distance=distance)
            try:
                granted = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                # The reservation may land after we stopped waiting: release it behind it, in order.
                self.submit(self.release, shard)
                raise
            if granted is not None or distance > 0:
                return granted
            if self._clock() - started > self.stuck_timeout:
                usage = await self.run(self.usage)
                raise CacheError(
                    f"cache_limit={self.limit} bytes is too small: shard {shard} needs {nbytes} bytes, "
                    f"{usage} bytes are in use by shards being read or kept, and none was released for "
                    f"{self.stuck_timeout:.0f} s"
                )
            await self._sleep(delay)
            delay = min(delay * 2, 0.05)

    def commit(self, shard: int, nbytes: int) -> None:
        """Replace this process's reservation for ``shard`` by its published files' real size."""
        key = self.keys[shard]
        if key is None:
            return
        with self.ledger.transaction() as conns:
            self.ledger.unreserve(conns, key)
            self.ledger.record(conns, key, nbytes, evictable=True)

    def release(self, shard: int) -> None:
        """Drop this process's reservation for ``shard`` (its download failed or was cancelled)."""
        key = self.keys[shard]
        if key is None:
            return
        self._yielding.pop(shard, None)
        self._coupling.pop(shard, None)
        with self.ledger.transaction() as conns:
            self.ledger.unreserve(conns, key)
            self.ledger.set_waiting(conns, False)

    def evict(self, shard: int) -> int | None:
        """Evict ``shard`` on request (``evict_shard``): the bytes freed, or None if a reader pins it."""
        key = self.keys[shard]
        if key is None:
            return 0
        with self.ledger.transaction() as conns:
            recorded = self.ledger.resident_bytes(conns, key)
            row = FileRow(key.root, key.key, recorded or 0, key.paths, True, 0.0)
            if not self._evict(conns, row):
                return None
            return row.bytes

    def publish(self, position: float, needs: Sequence[tuple[int, float]] | None) -> None:
        """Tell the node this process is at ``position`` and needs these shards at these positions
        (None: the same as last time; only the position and progress are written)."""
        rows = (
            None if needs is None else [(k, at) for shard, at in needs if (k := self.keys[shard]) is not None]
        )
        with self.ledger.transaction() as conns:
            if not self._slot_claimed and self.hint_slot is not None:
                # This process now speaks for its slot: the hints its predecessor left are superseded.
                self.ledger.drop_hints(conns, self.hint_slot)
                self._slot_claimed = True
            self.ledger.publish(conns, position, rows, progress=self._progress())
            if rows is not None:
                self.ledger.touch(conns, [k for k, _ in rows])

    def usage(self) -> int:
        """Bytes counted against the limit now (see :class:`BudgetStatistics`)."""
        with self.ledger.transaction() as conns:
            return self.ledger.usage(conns) + self.fixed

    def statistics(self) -> BudgetStatistics:
        """Current figures."""
        return BudgetStatistics(
            self.limit,
            self.usage(),
            self._evictions,
            self._evicted_bytes,
            self._deferrals,
            self._yields,
            self._couplings,
        )

    # -- eviction ------------------------------------------------------------------------------------
    def _make_room(
        self,
        conns: Sequence[sqlite3.Connection],
        usage: int,
        nbytes: int,
        distance: float,
        *,
        exclude: LedgerKey,
        room: int,
        may_yield: bool = False,
        may_couple: bool = False,
    ) -> int:
        """Evict until ``nbytes`` more fit in ``room`` or no allowed victim is left; returns the usage.

        With ``may_yield``, stop at a victim another process needs within ``yield_within`` unless that
        process waits for room itself (the caller then waits for that reader to be done with it). With
        ``may_couple``, also stop at a victim a lagging, moving process needs in its current epoch.
        """
        fixed = self.fixed + sum(b for _, b in self.indexes)
        if fixed + nbytes > self.limit:
            raise CacheError(
                f"cache_limit={self.limit} bytes cannot hold shard {exclude.key} ({nbytes} bytes) next to "
                f"{fixed} bytes of files that may not be evicted"
            )
        now = self._clock()
        if now - self._last_sweep > _SWEEP_EVERY:
            self._last_sweep = now
            self._sweep(conns)
        ranked = self._rank(conns, exclude)
        needers: dict[tuple[int, str], tuple[str, float]] | None = None
        waiting: set[str] = set()
        laggards: set[tuple[int, str]] | None = None
        progress = self._progress() if may_couple else None
        for score, row in ranked:
            if usage + nbytes <= room:
                break
            # A look-ahead shard only displaces shards needed later than itself and later than the
            # protected horizon, and never the next epoch's first shards (kept over what nobody needs,
            # they would go first to look-ahead: the cache is full of them); the shard the consumer
            # waits for displaces anything not being read (then the next epoch keeps its soonest).
            if distance > 0 and (score <= max(distance, self.protect_within) or LATER <= score < math.inf):
                break
            if may_yield and score <= self.yield_within and needers is None:
                needers, waiting = self.ledger.needers(conns), self.ledger.waiting(conns)
            needer, soon = (needers or {}).get((row.root, row.key), ("", math.inf))
            if soon <= self.yield_within and needer not in waiting:
                self._yields += 1
                break
            if progress is not None and math.isfinite(score):
                if laggards is None:
                    since = self.ledger.now() - self.stall_after
                    behind = progress - self.couple_gap
                    laggards = self.ledger.laggards(conns, behind, moved_since=since, horizon=LATER)
                if (row.root, row.key) in laggards:
                    self._couplings += 1
                    break
            if self._evict(conns, row):
                usage -= row.bytes
        return usage

    def _rank(self, conns: Sequence[sqlite3.Connection], exclude: LedgerKey) -> list[tuple[float, FileRow]]:
        """Candidates, furthest next use first (then least recently used)."""
        others = self.ledger.others_needs(conns)
        here = self._position()
        ranked: list[tuple[float, float, FileRow]] = []
        for row in self.ledger.candidates(conns):
            if (row.root, row.key) == (exclude.root, exclude.key):
                continue
            score = others.get((row.root, row.key), math.inf)
            shard = self._own.get((row.root, row.key))
            if shard is not None:
                score = min(score, max(0.0, self._next_use(shard) - here))
            ranked.append((score, -row.used, row))
        ranked.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [(score, row) for score, _, row in ranked]

    def _evict(self, conns: Sequence[sqlite3.Connection], row: FileRow) -> bool:
        """Delete a candidate's files unless a reader pins it; True if its bytes are freed."""
        root = self.ledger.roots[row.root]
        first = root / row.key
        with exclusive(first) as locked:
            if not locked and first.exists():
                return False  # pinned: a reader holds its shared lock
            # Forget the row, then delete: the transaction commits after the files are gone, so a crash
            # in between rolls the row back (a row without files, dropped when found) - the bytes are
            # never counted free while the files exist.
            self.ledger.forget(conns, row.root, row.key)
            try:
                for rel in row.paths:
                    with contextlib.suppress(FileNotFoundError):
                        (root / rel).unlink()
            except OSError as exc:
                raise CacheError(f"evicting {first} to make room under cache_limit: {exc}") from exc
        self._evictions += 1
        self._evicted_bytes += row.bytes
        shard = self._own.get((row.root, row.key))
        if shard is not None:
            self._on_evict(shard)
        return True

    def _sweep(self, conns: Sequence[sqlite3.Connection]) -> None:
        """Drop dead processes' rows and the temp files their interrupted downloads left."""
        for root_index, key in self.ledger.sweep(conns):
            shard = self._own.get((root_index, key))
            own = None if shard is None else self.keys[shard]
            for rel in own.paths if own is not None else (key,):
                _remove_orphan_temps(self.ledger.roots[root_index] / rel)

    def _path(self, key: LedgerKey) -> Path:
        return self.ledger.roots[key.root] / key.key

    def _size(self, key: LedgerKey) -> int:
        root = self.ledger.roots[key.root]
        return file_sizes(root / rel for rel in key.paths)


def _remove_orphan_temps(path: Path) -> None:
    """Delete temp files next to ``path`` whose producer is gone (its publish lock is free)."""
    lock = FileLock(path)
    with contextlib.suppress(OSError):
        if lock.try_acquire():
            try:
                remove_stale_temps(path)
            finally:
                lock.release()
