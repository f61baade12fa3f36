"""The plan feed: chunks with their shard facts, and next-use over a window of global positions."""

from __future__ import annotations

import math

import numpy as np

from astreaming.engine.planfeed import WindowNextUse


def test_window_next_use_answers_in_global_positions() -> None:
    # Positions 1000..1007 of a plan; shards as in NextUse's hand-checked example.
    nu = WindowNextUse(np.array([3, 3, 1, 1, 3, 2, -1, 2]), 1000)
    nu.advance(1000)
    assert (nu(3), nu(1), nu(2), nu(0)) == (1000, 1002, 1005, math.inf)
    nu.advance(1002)
    assert (nu(3), nu(1)) == (1004, 1002)
    nu.advance(1005)
    assert (nu(3), nu(1), nu(2)) == (math.inf, math.inf, 1005)  # used again only beyond the window
