"""``py1br``: spans shuffled per canonical node, then samples shuffled within staggered random blocks."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from astreaming.order.shuffle._spans import NodeSpans

__all__ = ["iter_py1br"]


def iter_py1br(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Yield ``(node_start, perm_of_node)`` per canonical node.

    Block sizes are drawn from ``[0.75, 1.25) * block_size`` and each node's blocks start staggered by a
    per-node offset drawn once per epoch; all of a node's block sizes are drawn before any block is shuffled.
    """
    layout = NodeSpans(shuffle_units, num_canonical_nodes, seed, epoch)
    rng = layout.epoch_rng
    stagger = rng.integers(0, int(0.75 * block_size), (num_canonical_nodes,))
    low, high = int(0.75 * block_size), int(1.25 * block_size)
    for k in range(num_canonical_nodes):
        start, stop = int(layout.bounds[k]), int(layout.bounds[k + 1])
        spans = layout.node(k)
        out = (
            np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in spans])
            if spans
            else np.zeros(0, dtype=np.int64)
        )
        size = stop - start
        blocks: list[tuple[int, int]] = []
        end = 0
        shift = int(stagger[k])
        while end < size:
            drawn = int(rng.integers(low, high))
            block_lo = max(end - shift, 0)
            block_hi = min(end + drawn - shift, size)
            blocks.append((block_lo, block_hi))
            end += block_hi - block_lo
        for block_lo, block_hi in blocks:
            rng.shuffle(out[block_lo:block_hi])
        yield start, out
