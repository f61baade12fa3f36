"""``py1e`` (the default): spans shuffled per canonical node, samples spread by random block-sized offsets."""

from __future__ import annotations

import warnings
from collections.abc import Container, Generator, Sequence

import numpy as np

from astreaming.order.shuffle._spans import NodeSpans

__all__ = ["iter_py1e"]

BLOCK_WARNING = (
    "Shuffle block size was smaller than shard size for some shards. This will result in these shards not "
    "being shuffled with other shards. Set shuffle_block_size to a larger value for a higher quality shuffle."
)


def iter_py1e(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
    *,
    skip: Container[int] = (),
) -> Generator[tuple[int, np.ndarray | None], None, None]:
    """Yield ``(node_start, perm_of_node)`` per canonical node.

    Each span's samples are shuffled, then moved by uniform offsets within a window of a random block size
    (``[0.75, 1.25) * block_size``) around the span, clipped to the node; an argsort of the float64 positions
    gives the node's order. Only one node's arrays are alive at a time.

    Args:
        skip: Canonical nodes the caller does not need: their random draws are consumed (so later nodes come
            out identical) but no positions are computed or sorted, and ``None`` is yielded for them.

    Raises:
        ConfigError: if a canonical node would get no samples (fewer samples than canonical nodes).
    """
    layout = NodeSpans(shuffle_units, num_canonical_nodes, seed, epoch)
    layout.require_samples_per_node()
    rng = layout.epoch_rng
    low, high = int(0.75 * block_size), int(1.25 * block_size)
    warned = False
    for k in range(num_canonical_nodes):
        start, stop = int(layout.bounds[k]), int(layout.bounds[k + 1])
        size = stop - start
        spans = layout.node(k)
        skipped = k in skip
        # mosaic keeps the node's ids in a float64 array; int64 holds the same values exactly.
        samples = np.empty(size, dtype=np.int64)
        offset = 0
        for lo, hi in spans:
            piece = samples[offset : offset + hi - lo]
            if not skipped:
                piece[:] = np.arange(lo, hi)
            # A skipped node still shuffles (the number of draws depends on the length only, not the values).
            rng.shuffle(piece)
            offset += hi - lo
        positions = None if skipped else np.arange(size, dtype=np.float64)
        offset = 0
        for lo, hi in spans:
            span = hi - lo
            drawn = int(rng.integers(low, high))
            cutoff = (drawn - span) / 2
            if cutoff < 0:
                cutoff = 0
                warned = True
            if positions is None:
                # uniform() takes exactly one 64-bit draw per value: consume them without computing.
                rng.bit_generator.random_raw(span, output=False)
            else:
                left = max(-cutoff, -offset)
                right = min(cutoff, size - offset - span)
                positions[offset : offset + span] += rng.uniform(left, right, span)
            offset += span
        if positions is None:
            del samples
            yield start, None
            continue
        order = np.argsort(positions)
        del positions
        yield start, samples[order]
    if warned:
        warnings.warn(BLOCK_WARNING, UserWarning, stacklevel=2)
