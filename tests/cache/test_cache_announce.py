"""What a process announces to the ledger: rewritten only when it changed, the next epoch's needs anchored
at the plan's end, and a position-only publication that keeps the needs recorded before."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astreaming.cache.announce import NeedsAnnouncer
from astreaming.cache.budget import NodeBudget
from astreaming.cache.ledger import Ledger, LedgerKey
from astreaming.cache.nextuse import LATER, LaterUse, NextUse

SHARD = 1000


def test_moving_inside_a_run_changes_nothing_a_shard_entering_or_moving_on_does() -> None:
    nu = NextUse(np.array([3] * 10 + [1] * 10 + [3] * 5 + [2] * 10, dtype=np.int64))
    announcer = NeedsAnnouncer(window=15, limit=8)
    needs, changed = announcer.needs(nu, 35)
    assert changed and needs == [(3, 0.0), (1, 10.0)]
    nu.advance(4)
    needs, changed = announcer.needs(nu, 35)
    assert not changed and needs == [(3, 4.0), (1, 10.0)]  # 3 is needed now either way
    nu.advance(6)  # the window reaches shard 3's second run
    assert announcer.needs(nu, 35)[1] is False  # its first run still covers the position
    nu.advance(10)  # 3's next use moves on to position 20
    needs, changed = announcer.needs(nu, 35)
    assert changed and needs == [(1, 10.0), (3, 20.0)]
    nu.advance(21)  # 2 enters the window
    needs, changed = announcer.needs(nu, 35)
    assert changed and needs == [(3, 21.0), (2, 25.0)]
    announcer.reset()
    assert announcer.needs(nu, 35)[1] is True


def test_the_next_epochs_needs_sit_at_the_plans_end_and_stay_there_while_the_process_moves() -> None:
    nu = NextUse(np.array([0] * 10 + [1] * 10, dtype=np.int64))
    nu.later = LaterUse(np.array([5, 5, 6], dtype=np.int64))
    announcer = NeedsAnnouncer(window=100, limit=8)
    needs, changed = announcer.needs(nu, 20)
    assert changed and needs == [(0, 0.0), (1, 10.0), (5, 20 + LATER + 0), (6, 20 + LATER + 2)]
    nu.advance(3)
    needs, changed = announcer.needs(nu, 20)
    assert not changed and needs[2:] == [(5, 20 + LATER + 0), (6, 20 + LATER + 2)]
    # Near the plan's end the distance from the position to a next-epoch need is still beyond LATER.
    nu.advance(19)
    assert all(at - 19 >= LATER for _, at in announcer.needs(nu, 20)[0][1:])
    # Plan length unknown: placed from the position, hence rewritten at each move.
    unknown = NeedsAnnouncer(window=100, limit=8)
    assert unknown.needs(nu, None)[0][-1] == (6, 19 + LATER + 2)
    nu.advance(19.5)
    assert unknown.needs(nu, None)[1] is True


def test_the_limit_counts_this_plans_needs_first() -> None:
    nu = NextUse(np.array([0, 1, 2, 3], dtype=np.int64))
    nu.later = LaterUse(np.array([7], dtype=np.int64))
    assert [s for s, _ in NeedsAnnouncer(window=100, limit=3).needs(nu, 4)[0]] == [0, 1, 2]
    assert [s for s, _ in NeedsAnnouncer(window=2, limit=3).needs(nu, 4)[0]] == [0, 1, 7]


def test_a_position_only_publication_keeps_the_needs_and_moves_their_distances(tmp_path: Path) -> None:
    keys: list[LedgerKey | None] = [
        LedgerKey(0, f"shard.{s:05d}.mds", (f"shard.{s:05d}.mds",)) for s in range(3)
    ]
    reader = NodeBudget(3 * SHARD, Ledger([tmp_path]), keys)
    other = NodeBudget(3 * SHARD, Ledger([tmp_path]), keys)
    reader.open()
    other.open()
    reader.publish(0.0, [(1, 100.0), (2, 300.0)])
    reader.publish(90.0, None)
    with other.ledger.transaction() as conns:
        seen = other.ledger.others_needs(conns)
        rows = conns[0].execute("SELECT COUNT(*) FROM needs").fetchone()[0]
    assert rows == 2
    assert seen == {(0, "shard.00001.mds"): 10.0, (0, "shard.00002.mds"): 210.0}
    reader.publish(95.0, [])  # an empty list is a list: nothing needed any more
    with other.ledger.transaction() as conns:
        assert other.ledger.others_needs(conns) == {}
    reader.close()
    other.close()
