"""``py1s``: shuffle spans within each canonical node, then samples within each span."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from astreaming.order.shuffle._spans import NodeSpans

__all__ = ["iter_py1s"]


def iter_py1s(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Yield ``(node_start, perm_of_node)`` per canonical node; ``block_size`` is unused."""
    del block_size
    layout = NodeSpans(shuffle_units, num_canonical_nodes, seed, epoch)
    rng = layout.epoch_rng
    for k in range(num_canonical_nodes):
        start, stop = int(layout.bounds[k]), int(layout.bounds[k + 1])
        out = np.empty(stop - start, dtype=np.int64)
        offset = 0
        for lo, hi in layout.node(k):
            piece = out[offset : offset + hi - lo]
            piece[:] = np.arange(lo, hi)
            rng.shuffle(piece)
            offset += hi - lo
        yield start, out
