"""Which shards are ready to read in this process: the one owner of that fact for one runtime.

Everyone who needs it consults this object instead of keeping a copy in step:

- the fetch scheduler marks a shard ready when its fetch succeeds (:meth:`Readiness.mark_ready`) and
  fetches a shard again only when it is not ready; without a cache limit a plan walk also marks a shard
  ready whose files are all in the cache (all the fetch of such a shard would check);
- a consumer (a plan walk, random access) reads a ready shard without a round trip to the loop
  (:meth:`Readiness.is_ready`), and reports a shard whose files it found gone (:meth:`Readiness.forget`);
- the cache budget reports each shard it evicted, through the same :meth:`Readiness.forget`;
- consumers close their readers of forgotten shards at their next shard switch
  (:meth:`Readiness.take_forgotten`).

Thread-safety: the scheduler runs on the loop, consumers in their own threads, the budget's evictions on
its ledger thread. Each method is one operation on a built-in ``set`` or ``deque`` (atomic under the
GIL), so no lock is needed and a forget takes effect at once, in whatever thread reports it.

Readiness is a hint that saves a wait, not a guarantee that the files exist: another process sharing the
cache may evict a shard at any moment. A read therefore pins its shard first under a cache limit (which
fails for a shard that is gone) or catches the missing file; the consumer then forgets the shard and
waits for it again, which fetches it again.
"""

from __future__ import annotations

import collections

__all__ = ["Readiness"]


class Readiness:
    """The shards of one runtime that were fetched and not forgotten since."""

    def __init__(self) -> None:
        self._ready: set[int] = set()
        # Forgotten shards whose readers consumers have not closed yet (any consumer may take them).
        self._forgotten: collections.deque[int] = collections.deque()

    def mark_ready(self, shard: int) -> None:
        """``shard``'s files are in the cache and verified (its fetch succeeded)."""
        self._ready.add(shard)

    def is_ready(self, shard: int) -> bool:
        """Whether ``shard`` was fetched and not forgotten since (callable from any thread)."""
        return shard in self._ready

    def forget(self, shard: int) -> None:
        """``shard``'s files are gone (evicted, or found missing): the next wait for it fetches it again,
        and readers of it are closed at their consumer's next shard switch."""
        self._ready.discard(shard)
        self._forgotten.append(shard)

    def take_forgotten(self) -> list[int]:
        """The shards forgotten since the last call (by any consumer), whose readers must be closed."""
        forgotten = self._forgotten
        taken: list[int] = []
        while forgotten:
            try:
                taken.append(forgotten.popleft())
            except IndexError:  # another consumer took the last one meanwhile
                break
        return taken
