"""The world a worker lives in: nodes, ranks per node, DataLoader workers per rank, and replication."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from astreaming.errors import ConfigError

__all__ = ["World"]


@dataclass(frozen=True)
class World:
    """Where one DataLoader worker sits in a training job.

    Ranks are laid out contiguously per node (rank = node * ranks_per_node + rank_of_node) and workers
    contiguously per rank (worker = rank * workers_per_rank + worker_of_rank), as mosaicml-streaming assumes.

    Args:
        num_nodes: Physical nodes.
        ranks_per_node: Ranks (devices) per node.
        workers_per_rank: DataLoader workers per rank (1 when iterating in-process).
        worker: Global worker index in ``[0, num_nodes * ranks_per_node * workers_per_rank)``.
    """

    num_nodes: int
    ranks_per_node: int
    workers_per_rank: int
    worker: int

    def __post_init__(self) -> None:
        for name in ("num_nodes", "ranks_per_node", "workers_per_rank"):
            if getattr(self, name) < 1:
                raise ConfigError(f"World: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.worker < self.num_workers:
            raise ConfigError(f"World: worker must be in [0, {self.num_workers}), got {self.worker}")

    @classmethod
    def from_rank(
        cls, num_nodes: int, ranks_per_node: int, workers_per_rank: int, rank: int, worker_of_rank: int
    ) -> World:
        """Build the world of worker ``worker_of_rank`` of global rank ``rank``."""
        return cls(num_nodes, ranks_per_node, workers_per_rank, rank * workers_per_rank + worker_of_rank)

    # Derived attributes (the names mosaicml-streaming's World exposes).
    @property
    def num_ranks(self) -> int:
        """Total ranks."""
        return self.num_nodes * self.ranks_per_node

    @property
    def num_workers(self) -> int:
        """Total workers over all ranks."""
        return self.num_ranks * self.workers_per_rank

    @property
    def workers_per_node(self) -> int:
        """Workers per node."""
        return self.ranks_per_node * self.workers_per_rank

    @property
    def rank(self) -> int:
        """Global rank of this worker's process."""
        return self.worker // self.workers_per_rank

    @property
    def node(self) -> int:
        """Node index."""
        return self.rank // self.ranks_per_node

    @property
    def rank_of_node(self) -> int:
        """Rank within the node."""
        return self.rank % self.ranks_per_node

    @property
    def worker_of_node(self) -> int:
        """Worker index within the node."""
        return self.worker % self.workers_per_node

    @property
    def worker_of_rank(self) -> int:
        """Worker index within the rank."""
        return self.worker % self.workers_per_rank

    @property
    def is_leader(self) -> bool:
        """True for the first worker of the whole job."""
        return self.worker == 0

    @property
    def is_local_leader(self) -> bool:
        """True for the first worker of its node."""
        return self.worker_of_node == 0

    def replicate(self, replication: int | None) -> World:
        """The world used for partitioning when ``replication`` consecutive ranks share samples.

        Ranks ``k*r .. k*r + r-1`` become one rank ``k``; ``replication`` None or 1 leaves the world as is.

        Raises:
            ConfigError: if ``replication`` is not positive or does not divide the number of ranks.
        """
        if replication is None:
            return self
        if replication < 1:
            raise ConfigError(f"replication must be positive, got {replication}")
        if self.num_ranks % replication:
            raise ConfigError(
                f"replication ({replication}) must divide the world size ({self.num_ranks} ranks)"
            )
        num_ranks = self.num_ranks // replication
        # A replicated world that no longer fills whole nodes is treated as one node (mosaic's rule).
        num_nodes = num_ranks // self.ranks_per_node if num_ranks % self.ranks_per_node == 0 else 1
        ranks_per_node = num_ranks // num_nodes
        rank = self.rank // replication
        return World(
            num_nodes,
            ranks_per_node,
            self.workers_per_rank,
            rank * self.workers_per_rank + self.worker_of_rank,
        )

    def with_worker(self, worker_of_rank: int) -> World:
        """The same rank's world for another DataLoader worker."""
        return World.from_rank(
            self.num_nodes, self.ranks_per_node, self.workers_per_rank, self.rank, worker_of_rank
        )

    @classmethod
    def detect(cls) -> World:
        """Detect the world of the calling process and DataLoader worker.

        Rank and world size come from ``torch.distributed`` when torch is already imported and a process
        group is initialised; otherwise from ``RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` (defaults 0, 1,
        1). The worker comes from ``torch.utils.data.get_worker_info()`` when torch is imported. torch is
        never imported here and a process group is never created.

        Raises:
            ConfigError: if the environment describes an impossible world.
        """
        rank, world_size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
        local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
        worker_of_rank, workers_per_rank = 0, 1
        torch = sys.modules.get("torch")
        if torch is not None:
            dist = getattr(torch, "distributed", None)
            if dist is not None and dist.is_available() and dist.is_initialized():
                rank, world_size = int(dist.get_rank()), int(dist.get_world_size())
            info = torch.utils.data.get_worker_info()
            if info is not None:
                worker_of_rank, workers_per_rank = int(info.id), int(info.num_workers)
        if local_world_size < 1 or world_size < 1 or world_size % local_world_size:
            raise ConfigError(
                f"WORLD_SIZE ({world_size}) must be a positive multiple of "
                f"LOCAL_WORLD_SIZE ({local_world_size})"
            )
        if not 0 <= rank < world_size:
            raise ConfigError(f"RANK ({rank}) must be in [0, WORLD_SIZE={world_size})")
        return cls.from_rank(
            world_size // local_world_size, local_world_size, workers_per_rank, rank, worker_of_rank
        )


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {value!r}") from None
