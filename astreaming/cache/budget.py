"""``cache_limit`` within one process: byte accounting, pins, and "furthest next use" eviction.

The budget knows shards by an opaque hashable key and files by their actual sizes on disk. Downloads
``reserve`` room before they start and ``commit`` the real size when the file is published; the consumer
``pin`` s a shard while it reads it. Eviction picks, among resident shards that are unpinned and evictable,
the one whose next use in the plan is furthest away (Belady's rule, possible because the plan is known in
advance) - not mosaic's least-recently-used, which evicts exactly the shards a shuffled epoch needs soon.

Files of a stream without a remote are the source of truth, never cache: register them with
``evictable=False`` (or not at all) and they are never deleted.

All methods are thread-safe: the loop thread reserves and evicts while the consumer thread pins.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from astreaming.errors import CacheError, ConfigError

__all__ = ["BudgetStatistics", "CacheBudget", "check_cache_limit", "file_sizes"]

K = TypeVar("K", bound=Hashable)

#: mosaic 0.13 requires the limit to hold this many of the largest shard (PR #420).
MIN_LARGEST_SHARDS = 4


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


def file_sizes(paths: Iterable[os.PathLike[str] | str]) -> int:
    """Sum of the actual sizes of the files that exist among ``paths``."""
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except FileNotFoundError:
            continue
    return total


@dataclass(frozen=True)
class BudgetStatistics:
    """A snapshot of the budget's counters."""

    limit: int | None
    usage: int
    unevictable: int
    reserved: int
    resident_shards: int
    pinned_shards: int
    evictions: int
    evicted_bytes: int


class CacheBudget(Generic[K]):
    """Bytes accounting and eviction for one process's cache.

    Args:
        limit: ``cache_limit`` in bytes, or ``None`` (account only, never evict).
        next_use: Position in the plan at which a shard is next needed (``math.inf`` if never again).
            Called under the budget's lock; it must be cheap and must not call back into the budget.
        remove: Deletes a shard's files. Called under the budget's lock so that no pin can sneak in
            between the decision and the deletion.
        on_evict: Optional notification after a shard was evicted (e.g. to forget its readiness).
    """

    def __init__(
        self,
        limit: int | None,
        *,
        next_use: Callable[[K], float],
        remove: Callable[[K], None],
        on_evict: Callable[[K], None] | None = None,
    ) -> None:
        if limit is not None and limit <= 0:
            raise ConfigError(f"cache_limit must be positive, got {limit}")
        self.limit = limit
        self._next_use = next_use
        self._remove = remove
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._sizes: dict[K, int] = {}
        self._fixed: set[K] = set()
        self._fixed_bytes = 0
        self._pins: dict[K, int] = {}
        self._reservations: dict[K, int] = {}
        self._usage = 0
        self._evictions = 0
        self._evicted_bytes = 0

    # -- accounting --------------------------------------------------------------------------------
    def add(self, key: K, nbytes: int, *, evictable: bool = True) -> None:
        """Record files found on disk or published for ``key`` (adds to what is already recorded)."""
        with self._lock:
            self._usage += nbytes
            self._sizes[key] = self._sizes.get(key, 0) + nbytes
            if key in self._fixed:
                self._fixed_bytes += nbytes
            elif not evictable:
                self._fixed.add(key)
                self._fixed_bytes += self._sizes[key]

    def discard(self, key: K, nbytes: int | None = None) -> None:
        """Forget ``nbytes`` (default: all) of ``key``'s files, e.g. a zip deleted after decompressing."""
        with self._lock:
            have = self._sizes.get(key, 0)
            drop = have if nbytes is None else min(nbytes, have)
            self._usage -= drop
            if key in self._fixed:
                self._fixed_bytes -= drop
            if drop == have:
                self._sizes.pop(key, None)
                self._fixed.discard(key)
            else:
                self._sizes[key] = have - drop

    def is_resident(self, key: K) -> bool:
        """Whether the budget counts files of ``key`` as present."""
        with self._lock:
            return key in self._sizes

    @property
    def usage(self) -> int:
        """Bytes of recorded files (reservations excluded)."""
        return self._usage

    # -- pins ----------------------------------------------------------------------------------------
    def pin(self, key: K) -> bool:
        """Protect ``key`` from eviction (refcounted). Returns whether its files are resident now.

        A pin may be taken before the shard is downloaded; it then protects the shard as soon as it
        arrives. A ``False`` return after a download means it was evicted meanwhile: fetch it again.
        """
        with self._lock:
            self._pins[key] = self._pins.get(key, 0) + 1
            return key in self._sizes

    def unpin(self, key: K) -> None:
        """Drop one pin of ``key``."""
        with self._lock:
            count = self._pins.get(key, 0)
            if count <= 1:
                self._pins.pop(key, None)
            else:
                self._pins[key] = count - 1

    # -- reservations and eviction -----------------------------------------------------------------
    def try_reserve(self, key: K, nbytes: int) -> list[K] | None:
        """Make room for ``nbytes`` of ``key`` now, evicting as needed.

        Returns:
            The evicted keys, or ``None`` if it cannot fit yet (other reservations or pins may free room;
            shards evicted on the way were still reported through ``on_evict``).

        Raises:
            CacheError: It can never fit: the shard is larger than the limit allows next to files that
                may not be evicted, or nothing is evictable and nothing is reserved or pinned that could
                free room later.
        """
        fits, evicted = self._try_reserve(key, nbytes)
        return evicted if fits else None

    def _try_reserve(self, key: K, nbytes: int) -> tuple[bool, list[K]]:
        with self._lock:
            if self.limit is not None:
                fixed = self._fixed_bytes
                if nbytes + fixed > self.limit:
                    raise CacheError(
                        f"cache_limit={self.limit} bytes cannot hold shard {key!r} ({nbytes} bytes) next "
                        f"to {fixed} bytes of files that may not be evicted"
                    )
                evicted = self._evict_until_fits(nbytes, exclude=key)
                if self._committed() + nbytes > self.limit:
                    others_reserved = any(k != key for k in self._reservations)
                    if not others_reserved and not self._pinned_resident(exclude=key):
                        raise CacheError(
                            f"cache_limit={self.limit} bytes is too small: shard {key!r} needs {nbytes} "
                            f"bytes, {self._usage} bytes are in use and no shard can be evicted"
                        )
                    return False, evicted
            else:
                evicted = []
            self._reservations[key] = self._reservations.get(key, 0) + nbytes
            return True, evicted

    async def reserve(self, key: K, nbytes: int, *, pin_timeout: float = 60.0) -> list[K]:
        """Like :meth:`try_reserve` but waits (without blocking the loop) for room to free up.

        Other reservations always resolve (their download commits or is released), so waiting on them
        cannot hang. Pins are released by the consumer; if only pins stand in the way for ``pin_timeout``
        seconds, the consumer holds more than the limit allows and CacheError is raised.

        Returns:
            The keys evicted to make room.
        """
        evicted: list[K] = []
        delay = 0.002
        stuck_since: float | None = None
        while True:
            fits, got = self._try_reserve(key, nbytes)
            evicted += got
            if fits:
                return evicted
            with self._lock:
                only_pins = not any(k != key for k in self._reservations)
                pinned = ", ".join(sorted(map(repr, self._pinned_resident(exclude=key))))
            if only_pins:
                now = time.monotonic()
                stuck_since = now if stuck_since is None else stuck_since
                if now - stuck_since > pin_timeout:
                    raise CacheError(
                        f"cache_limit={self.limit} bytes is too small: shard {key!r} needs {nbytes} bytes "
                        f"and the pinned shards {pinned} fill the rest"
                    )
            else:
                stuck_since = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def commit(self, key: K, nbytes: int, *, evictable: bool = True) -> None:
        """Replace ``key``'s reservation by ``nbytes``, the actual total size of its files now on disk.

        The size replaces whatever was recorded for ``key`` (not added), so committing a shard that was
        already resident - e.g. another process published it first - does not count it twice.
        """
        with self._lock:
            self._reservations.pop(key, None)
            old = self._sizes.get(key, 0)
            self._sizes[key] = nbytes
            self._usage += nbytes - old
            if key in self._fixed:
                self._fixed_bytes += nbytes - old
            elif not evictable:
                self._fixed.add(key)
                self._fixed_bytes += nbytes

    def release(self, key: K) -> None:
        """Drop ``key``'s reservation without recording files (its download failed or was cancelled)."""
        with self._lock:
            self._reservations.pop(key, None)

    def _pinned_resident(self, *, exclude: K) -> list[K]:
        # Pins on shards not on disk yet free nothing when released; only resident ones matter.
        return [k for k in self._pins if k in self._sizes and k != exclude]

    def _committed(self) -> int:
        return self._usage + sum(self._reservations.values())

    def _evict_until_fits(self, nbytes: int, *, exclude: K) -> list[K]:
        """Evict furthest-next-use shards until ``nbytes`` more fit. Caller holds the lock."""
        assert self.limit is not None
        evicted: list[K] = []
        while self._committed() + nbytes > self.limit:
            victim = self._pick_victim(exclude)
            if victim is None:
                break
            try:
                self._remove(victim)
            except OSError as exc:
                raise CacheError(f"evicting shard {victim!r} to make room under cache_limit: {exc}") from exc
            freed = self._sizes.pop(victim)
            self._usage -= freed
            self._evictions += 1
            self._evicted_bytes += freed
            evicted.append(victim)
            if self._on_evict is not None:
                self._on_evict(victim)
        return evicted

    def _pick_victim(self, exclude: K) -> K | None:
        best: K | None = None
        best_rank = (-math.inf, 0)
        for key, size in self._sizes.items():
            if key == exclude or key in self._fixed or key in self._pins or key in self._reservations:
                continue
            rank = (self._next_use(key), size)
            if best is None or rank > best_rank:
                best, best_rank = key, rank
        return best

    def statistics(self) -> BudgetStatistics:
        """Current counters."""
        with self._lock:
            return BudgetStatistics(
                limit=self.limit,
                usage=self._usage,
                unevictable=self._fixed_bytes,
                reserved=sum(self._reservations.values()),
                resident_shards=len(self._sizes),
                pinned_shards=len(self._pins),
                evictions=self._evictions,
                evicted_bytes=self._evicted_bytes,
            )
