"""``py2s``: a fixed per-run shuffle of units and their samples, then the same again per epoch per node."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from astreaming.order.shuffle._spans import divide_spans, node_bounds

__all__ = ["iter_py2s"]


def iter_py2s(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Yield ``(node_start, perm_of_node)`` per canonical node; ``block_size`` is unused."""
    del block_size
    sizes = np.asarray(shuffle_units, dtype=np.int64)
    num_samples = int(sizes.sum())
    run_rng = np.random.default_rng(seed)
    order = np.arange(len(sizes))
    run_rng.shuffle(order)
    starts = np.cumsum(sizes) - sizes
    # Lay the units out in run order, each unit's samples shuffled by the run generator (fixed per run).
    ids = np.empty(num_samples, dtype=np.int64)
    unit_lo = np.empty(len(sizes), dtype=np.int64)
    offset = 0
    for i, unit in enumerate(order):
        size = int(sizes[unit])
        piece = ids[offset : offset + size]
        piece[:] = np.arange(starts[unit], starts[unit] + size)
        run_rng.shuffle(piece)
        unit_lo[i] = offset
        offset += size
    unit_hi = unit_lo + sizes[order]
    # Split at canonical node boundaries exactly as the span shuffles do (0-sample units included).
    spans, parts = divide_spans(
        list(zip(unit_lo.tolist(), unit_hi.tolist(), strict=True)), num_samples, num_canonical_nodes
    )
    bounds = node_bounds(num_samples, num_canonical_nodes)
    epoch_rng = np.random.default_rng(seed + epoch)
    for k in range(num_canonical_nodes):
        start, stop = int(bounds[k]), int(bounds[k + 1])
        begin, end = parts[k]
        pieces = spans[begin:end]
        local = np.arange(len(pieces))
        epoch_rng.shuffle(local)
        out = np.empty(stop - start, dtype=np.int64)
        pos = 0
        for index in local:
            lo, hi = pieces[index]
            piece = out[pos : pos + hi - lo]
            piece[:] = ids[lo:hi]
            epoch_rng.shuffle(piece)
            pos += hi - lo
        yield start, out
