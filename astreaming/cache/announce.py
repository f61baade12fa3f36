"""What a process announces to the node's ledger: the shards it needs soon, rewritten only on change.

Every process under a ``cache_limit`` publishes its position a few times a second, and with it the
shards it needs within its window (at most ``limit`` of them): the input of the node's "furthest next use"
eviction and of the coupling of a leading job to a lagging one. With 8 ranks x 8 workers that is 64
writers of one small SQLite file under one lock, so the list is written again only when it changed; a
move alone rewrites one row (the position). A need already reached (at or before the position) counts
from the position wherever it was recorded, so only a shard entering or leaving the list, or one whose
next use moved past the position, is a change. The next epoch's first needs are placed from the plan's
end rather than from the position, so they too stay put while the process moves.
"""

from __future__ import annotations

import math

from astreaming.cache.nextuse import NextUse

__all__ = ["NeedsAnnouncer"]


class NeedsAnnouncer:
    """The needs to announce at a plan position, and whether they changed since the last announcement.

    Args:
        window: Plan positions ahead whose shards are announced.
        limit: At most this many shards (this plan's soonest first, then the next plan's).
    """

    def __init__(self, window: int, limit: int) -> None:
        self.window = window
        self.limit = limit
        self._last: list[tuple[int, float]] | None = None

    def reset(self) -> None:
        """Announce the whole list next time (a new plan, or the last announcement failed)."""
        self._last = None

    def needs(self, next_use: NextUse, plan_length: int | None) -> tuple[list[tuple[int, float]], bool]:
        """``(shard, plan position)`` pairs to announce at ``next_use``'s position, and whether they
        differ from the last ones returned.

        ``plan_length`` (positions of the current plan, None: unknown) places the next plan's needs at
        the plan's end plus ``LATER`` plus their position there: never nearer than ``LATER``, however far
        the process moved since they were written. Unknown, they are placed from the position, and
        rewritten at each move.
        """
        position = float(next_use.global_position)
        needs = next_use.upcoming(self.window, self.limit)
        later = next_use.later_needs({s for s, _ in needs}, self.limit - len(needs))
        if plan_length is not None:
            later = [(shard, plan_length + (at - position)) for shard, at in later]
        needs += later
        seen = [(shard, at if at > position else -math.inf) for shard, at in needs]
        changed = (plan_length is None and bool(later)) or seen != self._last
        self._last = seen
        return needs, changed
