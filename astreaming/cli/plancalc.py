"""What ``astreaming plan`` computes, from the order code the datasets use (``astreaming.order``).

For each rank: its samples of the epoch in the order its DataLoader yields them (workers round-robin,
as torch's DataLoader asks them), the shards they come from, the cache the rank needs so that no shard is
downloaded twice (the peak, over the epoch, of the raw bytes of the shards between their first and last
use), and a shuffle-spread figure. The same per node, whose ranks step together.

Shuffle spread: for the samples of one shard, the mean distance between their positions in the rank's
order, divided by its expectation for a uniformly random order of the rank's samples ((n + 1) / 3).
1.0 means a shard's samples are as spread out as in a uniform shuffle; near 0, they come together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from astreaming.order import EpochSpec, World, interleave_worker_batches, plan_worker_epoch

__all__ = ["RankPlan", "cache_peak", "plan_ranks", "shuffle_spread"]


@dataclass(frozen=True)
class RankPlan:
    """One rank's epoch: ``samples`` (ids in yield order) and ``shards`` (the shard of each)."""

    rank: int
    samples: np.ndarray
    shards: np.ndarray


def plan_ranks(
    spec: EpochSpec, num_nodes: int, ranks_per_node: int, workers: int, epoch: int, ranks: Sequence[int]
) -> list[RankPlan]:
    """The epoch of each rank in ``ranks`` (``workers`` 0 = iterating in the rank's process)."""
    per_rank = max(1, workers)
    out = []
    for rank in ranks:
        batches = []
        for w in range(per_rank):
            world = World.from_rank(num_nodes, ranks_per_node, per_rank, rank, w).replicate(spec.replication)
            batches.append(plan_worker_epoch(spec, world, epoch).batches())
        merged = interleave_worker_batches(batches)
        ids = np.concatenate(merged) if merged else np.zeros(0, np.int64)
        out.append(RankPlan(rank, ids, spec.shard_of(ids)))
    return out


def _spans(shards: np.ndarray, num_shards: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shard, its first and last position in ``shards`` (-1 where unused)."""
    first = np.full(num_shards, -1, np.int64)
    last = np.full(num_shards, -1, np.int64)
    pos = np.arange(len(shards), dtype=np.int64)
    last[shards] = pos  # later assignments win: the last position
    first[shards[::-1]] = pos[::-1]  # reversed, the first position wins
    return first, last


def cache_peak(sequences: Sequence[np.ndarray], shard_bytes: np.ndarray) -> int:
    """Peak raw bytes of shards held between their first and last use, over sequences stepping together.

    Position ``t`` of every sequence happens at the same time (ranks of a node step together).
    """
    n = len(shard_bytes)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    last = np.full(n, -1, np.int64)
    for seq in sequences:
        f, l_ = _spans(seq, n)
        used = f >= 0
        first[used] = np.minimum(first[used], f[used])
        last[used] = np.maximum(last[used], l_[used])
    used = last >= 0
    if not used.any():
        return 0
    length = int(last[used].max()) + 2
    delta = np.zeros(length, np.int64)
    np.add.at(delta, first[used], shard_bytes[used])
    np.add.at(delta, last[used] + 1, -shard_bytes[used])
    return int(np.cumsum(delta).max())


def shuffle_spread(shards: np.ndarray) -> float:
    """The shuffle-spread figure of one rank's shard sequence (see the module docstring)."""
    n = len(shards)
    if n < 2:
        return float("nan")
    order = np.argsort(shards, kind="stable")  # positions grouped by shard, increasing within each
    grouped = shards[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    counts = np.diff(np.r_[starts, n])
    # Rank of each position within its shard group: k = 0..m-1.
    k = np.arange(n) - np.repeat(starts, counts)
    m = np.repeat(counts, counts)
    # Sum over pairs i<j of (p_j - p_i) = sum_k p_k (2k - m + 1), per group, summed over groups.
    total = float(np.sum(order.astype(np.float64) * (2 * k - m + 1)))
    pairs = float(np.sum(counts * (counts - 1) / 2))
    if pairs == 0:
        return float("nan")
    return (total / pairs) / ((n + 1) / 3)
