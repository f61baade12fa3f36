"""``Spanner``: global sample id -> (shard, index within the shard), mosaic's sample-to-shard lookup."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Spanner"]


class Spanner:
    """Maps a global sample id to its shard and its index within that shard.

    Args:
        shard_sizes: Samples in each shard, in shard order.
        span_size: Accepted for mosaic compatibility (its lookup table granularity); unused, as a
            binary search over the shard bounds is exact and needs no table.

    Raises:
        ValueError: a negative shard size.
    """

    def __init__(
        self, shard_sizes: Sequence[int] | npt.NDArray[np.integer], span_size: int = 1 << 10
    ) -> None:
        sizes = np.asarray(shard_sizes, dtype=np.int64).reshape(-1)
        if len(sizes) and int(sizes.min()) < 0:
            raise ValueError(f"Spanner: shard sizes must be >= 0, got {int(sizes.min())}")
        self.shard_sizes = sizes
        self.span_size = span_size
        self._bounds: list[int] = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        self.num_samples = self._bounds[-1]

    def __getitem__(self, index: int) -> tuple[int, int]:
        """``(shard_id, index_in_shard)`` of sample ``index``.

        Raises:
            IndexError: ``index`` outside ``0 <= index < num_samples``.
        """
        if not 0 <= index < self.num_samples:
            raise IndexError(f"Spanner: sample index {index} out of range (0 <= index < {self.num_samples})")
        shard = bisect.bisect_right(self._bounds, index) - 1
        return shard, int(index) - self._bounds[shard]
