"""``naive``: one global permutation per epoch, ignoring shards and canonical nodes."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

__all__ = ["iter_naive"]


def iter_naive(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Yield ``(0, perm)`` with ``perm = default_rng(seed + epoch).permutation(N)``."""
    del num_canonical_nodes, block_size  # not node- or block-aware
    num_samples = int(np.sum(shuffle_units, dtype=np.int64))
    yield 0, np.random.default_rng(seed + epoch).permutation(num_samples).astype(np.int64)
