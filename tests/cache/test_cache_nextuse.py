"""NextUse against a brute-force scan of the plan."""

from __future__ import annotations

import math

import numpy as np

from astreaming.cache.nextuse import LATER, LaterUse, NextUse


def brute(plan: list[int], shard: int, position: int) -> float:
    for i in range(position, len(plan)):
        if plan[i] == shard:
            return float(i)
    return math.inf


def test_matches_a_brute_force_scan() -> None:
    rng = np.random.default_rng(7)
    plan = rng.integers(-1, 6, size=300)
    plan = np.repeat(plan, rng.integers(1, 4, size=300))  # runs of varying length
    nu = NextUse(plan)
    as_list = plan.tolist()
    for position in range(0, len(as_list) + 2, 3):
        nu.advance(position)
        for shard in range(-1, 8):
            expected = math.inf if shard < 0 else brute(as_list, shard, position)
            assert nu(shard) == expected, (position, shard)


def test_hand_checked_example() -> None:
    nu = NextUse(np.array([3, 3, 1, 1, 3, 2, -1, 2]))
    assert (nu(3), nu(1), nu(2), nu(0)) == (0, 2, 5, math.inf)
    nu.advance(1)
    assert nu(3) == 1  # in use right now
    nu.advance(2)
    assert (nu(3), nu(1)) == (4, 2)
    nu.advance(5)
    assert (nu(3), nu(1), nu(2)) == (math.inf, math.inf, 5)
    nu.advance(6)
    assert nu(2) == 7
    assert nu("not a shard") == math.inf


def test_empty_plan() -> None:
    assert NextUse(np.empty(0, np.int64))(0) == math.inf


def test_upcoming_lists_the_shards_needed_soon_in_order() -> None:
    plan = np.array([3, 3, 1, 1, 2, 3, 3, 0, 0, 5], dtype=np.int64)
    nu = NextUse(plan)
    nu.advance(1)
    assert nu.upcoming(5, 10) == [(3, 1.0), (1, 2.0), (2, 4.0)]  # positions 1..5
    assert nu.upcoming(100, 2) == [(3, 1.0), (1, 2.0)]
    nu.advance(6)
    assert nu.upcoming(100, 10) == [(3, 6.0), (0, 7.0), (5, 9.0)]
    nu.offset = 1000  # a window of a longer plan
    assert nu.global_position == 1006 and nu.upcoming(2, 10) == [(3, 1006.0), (0, 1007.0)]


def test_the_next_plans_first_needs_rank_after_this_plans_and_before_none() -> None:
    nu = NextUse(np.array([3, 3, 1, 1, 2]))
    nu.later = LaterUse(np.array([1, 1, -1, 0, 3, 0]))
    nu.advance(2)
    # In this plan: its own position. Past it: LATER plus the next plan's first position needing it.
    assert nu(1) == 2 and nu(2) == 4
    assert (nu(3) - nu.position, nu(0) - nu.position) == (LATER + 4, LATER + 3)
    assert nu(5) == math.inf  # needed by neither plan
    assert all(nu(s) < LATER for s in (1, 2))
    # Announced to the node after this plan's needs: at the position plus LATER plus the next position.
    assert nu.later_needs({1}, limit=5) == [(0, 2 + LATER + 3), (3, 2 + LATER + 4)]
    assert nu.later_needs(set(), limit=1) == [(1, 2 + LATER)]
