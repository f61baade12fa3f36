"""``random`` batching (the default): partition positions, shuffle them, map them to sample ids.

A worker computes only its own positions; the shuffle is generated canonical node by canonical node and
only the entries this worker needs are kept, so peak memory is one canonical node plus the worker's part.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from astreaming.order.batching._common import resample
from astreaming.order.partition import partition_layout
from astreaming.order.partition.relaxed import PartitionLayout
from astreaming.order.shuffle import get_shuffle, iter_shuffle
from astreaming.order.shuffle._spans import node_bounds
from astreaming.order.spec import EpochSpec
from astreaming.order.world import World

__all__ = ["gather_permutation", "generate_work_random", "random_worker_ids"]

#: Plans with more positions than this are gathered by linear passes instead of a sort.
_SORT_BELOW = 1 << 20
#: ... as long as there are at most this many pieces (canonical nodes); beyond, sorting is cheaper.
_LINEAR_PIECES = 16


def gather_permutation(
    pieces: Iterable[tuple[int, np.ndarray | None]], positions: np.ndarray, *, num_pieces: int | None = None
) -> np.ndarray:
    """``perm[positions]`` (-1 kept) from a permutation delivered in ordered pieces, stopping early.

    ``num_pieces`` (when known) lets a large gather use one linear pass per piece instead of a sort.
    """
    out = np.full(positions.shape, -1, dtype=np.int64)
    flat_pos = positions.reshape(-1)
    flat_out = out.reshape(-1)
    valid = np.flatnonzero(flat_pos >= 0)
    if not len(valid):
        return out
    valid_pos = flat_pos[valid]
    last = int(valid_pos.max())
    if len(valid) > _SORT_BELOW and num_pieces is not None and num_pieces <= _LINEAR_PIECES:
        # Large plans: one linear pass per piece (a handful of canonical nodes) beats sorting every
        # position, which dominated resuming a 100M-sample epoch.
        for start, piece in pieces:
            if piece is not None:
                inside = np.flatnonzero((valid_pos >= start) & (valid_pos < start + len(piece)))
                if len(inside):
                    flat_out[valid[inside]] = piece[valid_pos[inside] - start]
            if start + (0 if piece is None else len(piece)) > last:
                break
        return out
    order = valid[np.argsort(valid_pos, kind="stable")]
    sorted_pos = flat_pos[order]
    for start, piece in pieces:
        if piece is None:
            continue  # a piece the caller asked to skip: none of `positions` fall in it
        lo = int(np.searchsorted(sorted_pos, start, side="left"))
        hi = int(np.searchsorted(sorted_pos, start + len(piece), side="left"))
        if hi > lo:
            flat_out[order[lo:hi]] = piece[sorted_pos[lo:hi] - start]
        if start + len(piece) > last:
            break  # later canonical nodes are not needed by this worker
    return out


def worker_layout(spec: EpochSpec, world: World, epoch_size: int, sample_in_epoch: int) -> PartitionLayout:
    """The partition of this epoch's positions over the world (mosaic's ``get_partitions`` arguments)."""
    return partition_layout(
        spec.partition_algo,
        epoch_size,
        spec.num_canonical_nodes,
        world.num_nodes,
        world.ranks_per_node,
        world.workers_per_rank,
        spec.batch_size,
        sample_in_epoch,
        spec.initial_physical_nodes,
    )


def random_worker_ids(spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int) -> np.ndarray:
    """One worker's (batches, B) sample ids (-1 padding) for random batching, without the whole epoch."""
    res = resample(spec, epoch)
    layout = worker_layout(spec, world, res.epoch_size, sample_in_epoch)
    big = layout.worker_positions(world.node, world.rank_of_node, world.worker_of_rank)
    if spec.shuffle:
        # Canonical nodes this worker never reads: py1e consumes their draws without sorting them.
        valid = big[big >= 0]
        bounds = node_bounds(res.epoch_size, spec.num_canonical_nodes)
        node_of = np.searchsorted(bounds, valid, side="right") - 1
        # bincount, not unique: linear in the plan instead of a sort of it.
        needed = set(np.flatnonzero(np.bincount(node_of, minlength=len(bounds))).tolist())
        skip = frozenset(range(spec.num_canonical_nodes)) - needed
        pieces = iter_shuffle(
            spec.shuffle_algo,
            res.shuffle_units,
            spec.num_canonical_nodes,
            spec.shuffle_seed,
            epoch,
            spec.shuffle_block_size,
            skip=skip,
        )
        try:
            big = gather_permutation(pieces, big, num_pieces=spec.num_canonical_nodes)
        finally:
            pieces.close()
    return res.map(big)


def generate_work_random(spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int) -> np.ndarray:
    """The full (P, R, W, batches, B) array of sample ids for random batching (mosaic's layout)."""
    res = resample(spec, epoch)
    layout = worker_layout(spec, world, res.epoch_size, sample_in_epoch)
    big = layout.full()
    if spec.shuffle:
        perm = get_shuffle(
            spec.shuffle_algo,
            res.shuffle_units,
            spec.num_canonical_nodes,
            spec.shuffle_seed,
            epoch,
            spec.shuffle_block_size,
        )
        big = np.where(big != -1, perm[np.maximum(big, 0)], -1)
    return res.map(big)
