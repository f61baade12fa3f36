"""When a plan next needs each shard: the input of the budget's "furthest next use" eviction.

A worker's plan is a sequence of sample positions, each in one shard. A shard is used in runs of
consecutive positions; the next use of shard ``s`` at consumer position ``p`` is ``p`` if a run of ``s``
covers ``p``, else the start of the first later run, else never (``inf``). Runs are found with numpy once per
plan; a query is a binary search within the shard's runs, so eviction decisions stay cheap.

At an epoch's end the shards the next epoch starts with would look unneeded (``inf``): evicted first
and downloaded again moments later. :class:`LaterUse` holds the first positions of the *next* plan; a
shard needed there and not in this plan any more scores ``LATER`` plus its position in the next plan:
kept before any shard nobody needs, given up before any shard this plan still needs.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["LATER", "LaterUse", "NextUse"]

#: Distance added to a need of the next plan (epoch): beyond any position of the current one.
LATER = float(1 << 40)


class LaterUse:
    """Where the next plan first needs each shard of its first positions.

    Args:
        plan_shards: The shard of each of the next plan's first positions (``-1``: padding).
    """

    def __init__(self, plan_shards: npt.NDArray[np.integer]) -> None:
        shards = np.asarray(plan_shards, dtype=np.int64)
        keep = shards >= 0
        ids, first = np.unique(shards[keep], return_index=True)
        positions = np.flatnonzero(keep)[first] if len(ids) else np.empty(0, np.int64)
        order = np.argsort(positions, kind="stable")
        #: The next plan's shards by first need, and that position.
        self.shards: list[int] = ids[order].tolist()
        self.positions: list[int] = positions[order].tolist()
        self._first = dict(zip(self.shards, self.positions, strict=True))

    def __call__(self, shard: object) -> float:
        """``LATER`` plus the next plan's first position needing ``shard`` (``inf``: not among them)."""
        at = self._first.get(shard) if isinstance(shard, int) else None
        return math.inf if at is None else LATER + at


class NextUse:
    """Next-use positions of shards in one plan, relative to a moving consumer position.

    Args:
        plan_shards: The shard of every plan position (``-1`` for padding, which is ignored).

    Attributes:
        position: The consumer's current plan position; update it as the consumer advances.
    """

    def __init__(self, plan_shards: npt.NDArray[np.integer]) -> None:
        shards = np.asarray(plan_shards, dtype=np.int64)
        self.position: float = 0
        #: The next plan's first needs (see :class:`LaterUse`), for shards this plan needs no more.
        self.later: LaterUse | None = None
        # Plan position of ``plan_shards[0]``: a subclass covering a window of a longer plan sets it, so
        # that :attr:`global_position` and :meth:`upcoming` speak in positions of the whole plan.
        self.offset = 0
        if shards.size == 0:
            self._run_shard = self._run_start = self._run_end = np.empty(0, np.int64)
            self._first: dict[int, tuple[int, int]] = {}
            return
        change = np.flatnonzero(shards[1:] != shards[:-1]) + 1
        starts = np.concatenate(([0], change)).astype(np.int64)
        ends = np.concatenate((change, [shards.size])).astype(np.int64)
        run_shard = shards[starts]
        keep = run_shard >= 0
        starts, ends, run_shard = starts[keep], ends[keep], run_shard[keep]
        # Group runs by shard, in position order within each shard.
        order = np.lexsort((starts, run_shard))
        self._run_shard, self._run_start, self._run_end = run_shard[order], starts[order], ends[order]
        ids, first, counts = np.unique(self._run_shard, return_index=True, return_counts=True)
        triples = zip(ids.tolist(), first.tolist(), counts.tolist(), strict=True)
        self._first = {int(s): (int(f), int(f + c)) for s, f, c in triples}

    def advance(self, position: float) -> None:
        """Set the consumer position."""
        self.position = position

    @property
    def global_position(self) -> float:
        """The consumer's position in the whole plan."""
        return self.position + self.offset

    def upcoming(self, horizon: int, limit: int) -> list[tuple[int, float]]:
        """The shards needed within ``horizon`` positions of the current one, soonest first (at most
        ``limit``), each with the position of that need: what a process announces to the node."""
        if not len(self._run_shard):
            return []
        here = self.position
        live = (self._run_end > here) & (self._run_start < here + horizon)
        shards, starts = self._run_shard[live], np.maximum(self._run_start[live], here)
        order = np.lexsort((starts, shards))
        shards, starts = shards[order], starts[order]
        first = np.concatenate(([True], shards[1:] != shards[:-1])) if len(shards) else np.empty(0, bool)
        shards, starts = shards[first], starts[first]
        soonest = np.argsort(starts, kind="stable")[:limit]
        ats = (starts[soonest] + self.offset).astype(float).tolist()
        return list(zip(shards[soonest].tolist(), ats, strict=True))

    def later_needs(self, skip: set[int], limit: int) -> list[tuple[int, float]]:
        """The next plan's first needs as announced needs (at most ``limit``, none of ``skip``): each at
        the current global position plus ``LATER`` plus its position in the next plan."""
        if self.later is None or limit <= 0:
            return []
        here = self.global_position
        out: list[tuple[int, float]] = []
        for shard, at in zip(self.later.shards, self.later.positions, strict=True):
            if shard in skip:
                continue
            out.append((shard, here + LATER + at))
            if len(out) >= limit:
                break
        return out

    def __call__(self, shard: object) -> float:
        """The next plan position needing ``shard`` at or after :attr:`position` (``inf``: never; past
        this plan, ``LATER`` plus the next plan's first position needing it, if :attr:`later` knows)."""
        span = self._first.get(shard) if isinstance(shard, int) else None
        if span is not None:
            lo, hi = span
            # First run of this shard that ends after the current position.
            i = lo + int(np.searchsorted(self._run_end[lo:hi], self.position, side="right"))
            if i < hi:
                return float(max(int(self._run_start[i]), self.position))
        if self.later is None:
            return math.inf
        return self.position + self.later(shard)
