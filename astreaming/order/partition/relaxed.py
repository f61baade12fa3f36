"""The ``relaxed`` partition: resume on a node count that does not divide ``num_canonical_nodes``.

The epoch is partitioned for the initial node count P0 with the same global batch size, then each global
batch (and worker round) is re-cut over the current devices in traversal order (batch, worker, node, rank,
slot). The re-cut keeps batch index and worker, so a current device only needs the initial devices whose
slots overlap its own range of the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.partition.orig import OrigLayout, assemble, orig_layout

__all__ = ["PartitionLayout", "partition_layout"]


@dataclass(frozen=True)
class PartitionLayout:
    """One epoch's partition: the current layout and, when relaxed, the initial one it is re-cut from.

    Attributes:
        base: The ``orig`` layout actually computed (for the initial world when relaxed).
        num_physical_nodes: Current P.
        ranks_per_node: Current R.
        batch_size: Current per-device B.
    """

    base: OrigLayout
    num_physical_nodes: int
    ranks_per_node: int
    batch_size: int

    @property
    def relaxed(self) -> bool:
        """True when the partition is re-cut from another node count."""
        return self.base.num_physical_nodes != self.num_physical_nodes

    @property
    def workers_per_rank(self) -> int:
        """W."""
        return self.base.workers_per_rank

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(P, R, W, batches_per_worker, B)."""
        return (
            self.num_physical_nodes,
            self.ranks_per_node,
            self.workers_per_rank,
            self.base.batches_per_worker,
            self.batch_size,
        )

    def worker_positions(
        self, node: int, rank_of_node: int, worker_of_rank: int, first: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """The (batches, B) epoch positions of one worker's batches ``first..stop``; -1 is padding."""
        if not self.relaxed:
            return self.base.worker_positions(node, rank_of_node, worker_of_rank, first, stop)
        old_b = self.base.batch_size
        slot = (node * self.ranks_per_node + rank_of_node) * self.batch_size
        last = slot + self.batch_size - 1
        pieces = [
            self.base.worker_positions(*divmod(device, self.base.ranks_per_node), worker_of_rank, first, stop)
            for device in range(slot // old_b, last // old_b + 1)
        ]
        joined = np.concatenate(pieces, axis=1)
        start = slot - (slot // old_b) * old_b
        return np.ascontiguousarray(joined[:, start : start + self.batch_size])

    def full(self) -> np.ndarray:
        """The whole (P, R, W, batches, B) array."""
        return assemble(self)


def partition_layout(
    algo: str,
    num_samples: int,
    num_canonical_nodes: int,
    num_physical_nodes: int,
    ranks_per_node: int,
    workers_per_rank: int,
    batch_size: int,
    drop_first: int = 0,
    initial_physical_nodes: int | None = None,
) -> PartitionLayout:
    """Validate and size a partition for ``algo`` (``orig`` or ``relaxed``).

    Raises:
        UnknownOptionError: for an unknown ``algo``.
        ConfigError: for incompatible node counts or global batch size.
    """
    c, p = num_canonical_nodes, num_physical_nodes
    if algo == "orig" or (algo == "relaxed" and (initial_physical_nodes is None or not (c % p and p % c))):
        base = orig_layout(num_samples, c, p, ranks_per_node, workers_per_rank, batch_size, drop_first)
        return PartitionLayout(base, p, ranks_per_node, batch_size)
    if algo != "relaxed":
        from astreaming.errors import UnknownOptionError

        raise UnknownOptionError(f"partition_algo: unknown algorithm {algo!r}; expected 'orig' or 'relaxed'")
    assert initial_physical_nodes is not None
    global_batch = p * ranks_per_node * batch_size
    initial_devices = initial_physical_nodes * ranks_per_node
    if global_batch % initial_devices:
        raise ConfigError(
            f"A global batch size of {global_batch} is not evenly divisible by the initial total number of "
            f"devices of {initial_devices}. Make sure that when using the `relaxed` partitioning algorithm, "
            "the global batch size does not change during resumption of training."
        )
    base = orig_layout(
        num_samples,
        c,
        initial_physical_nodes,
        ranks_per_node,
        workers_per_rank,
        global_batch // initial_devices,
        drop_first,
    )
    return PartitionLayout(base, p, ranks_per_node, batch_size)
