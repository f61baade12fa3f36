"""A worker's epoch plan computed in the order it is consumed, chunk by chunk.

:class:`LazyWorkerPlan` yields the same sample ids as :func:`astreaming.order.plan.plan_worker_epoch`
(the eager reference), in chunks, without ever holding the epoch:

- ``random`` batching: the worker's partition positions are arithmetic (a range of its batches at a
  time); the shuffle is looked up through :class:`~astreaming.order.perm.PermSource`, which computes
  only the positions asked for (every algorithm but ``naive``; see :mod:`astreaming.order.perm`).
- the other batching methods mix streams over the whole epoch: their epoch array is one artefact, and a
  worker reads its own slice of it.

Artefacts come from a :class:`~astreaming.order.store.PlanStore`. With the engine's store (the cache
directory) an artefact is computed by the first process of the node that needs it and memory-mapped by
the others, so a node computes each once and a worker holds only its current chunk in private memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching import generate_work
from astreaming.order.batching._common import resample
from astreaming.order.batching.random import worker_layout
from astreaming.order.perm import PermSource
from astreaming.order.spec import EpochSpec
from astreaming.order.store import MemoryStore, PlanStore, id_dtype, plan_key
from astreaming.order.world import World

__all__ = ["CHUNK", "LazyWorkerPlan"]

#: Samples per chunk a plan yields (a chunk's ids are the only per-sample array a worker holds).
CHUNK = 1 << 16


class LazyWorkerPlan:
    """One worker's epoch, as chunks of sample ids in the order the worker yields them.

    Construction validates the configuration (the same errors and warnings as the eager plan) and, for
    the batching methods other than ``random``, gets the epoch array; iteration computes the rest.

    Args:
        spec: The dataset's order description.
        world: This worker's *parallel* world (after replication).
        epoch: The epoch.
        sample_in_epoch: Samples of the epoch already consumed over all (unique) ranks.
        store: Where artefacts are computed and shared (default: this process only).
        chunk: Samples per chunk (at least one batch).
    """

    def __init__(
        self,
        spec: EpochSpec,
        world: World,
        epoch: int,
        sample_in_epoch: int = 0,
        store: PlanStore | None = None,
        chunk: int = CHUNK,
    ) -> None:
        if epoch < 0 or sample_in_epoch < 0:
            raise ConfigError(f"epoch ({epoch}) and sample_in_epoch ({sample_in_epoch}) must be non-negative")
        self.spec, self.world, self.epoch, self.sample_in_epoch = spec, world, epoch, sample_in_epoch
        self.store: PlanStore = store if store is not None else MemoryStore()
        self.batches_per_chunk = max(1, chunk // spec.batch_size)
        self._work: np.ndarray | None = None
        self._work_key = ""
        if spec.batching_method == "random":
            self.res = resample(spec, epoch)
            self.layout = worker_layout(spec, world, self.res.epoch_size, sample_in_epoch)
            self.num_batches = self.layout.base.batches_per_worker
            self.perm: PermSource | None = (
                PermSource(spec, self.res, epoch, self.store) if spec.shuffle else None
            )
        else:
            self.perm = None
            self._work = self._worker_work()
            self.num_batches = len(self._work)

    def _worker_work(self) -> np.ndarray:
        spec, world = self.spec, self.world
        layout = (world.num_nodes, world.ranks_per_node, world.workers_per_rank)
        key = self._work_key = plan_key(
            f"work-{spec.batching_method}", spec, self.epoch, self.sample_in_epoch, layout
        )

        def compute() -> dict[str, np.ndarray]:
            work = generate_work(spec.batching_method, spec, world, self.epoch, self.sample_in_epoch)
            return {"work": work.astype(id_dtype(spec.num_samples))}

        mine: np.ndarray = self.store.get(key, compute)["work"][
            world.node, world.rank_of_node, world.worker_of_rank
        ]
        return mine

    def batches(self, first: int, stop: int) -> np.ndarray:
        """Sample ids of this worker's batches ``first..stop`` as (batches, B), -1 for padding."""
        stop = min(stop, self.num_batches)
        if self._work is not None:
            return np.asarray(self._work[first:stop], np.int64)
        w = self.world
        positions = self.layout.worker_positions(w.node, w.rank_of_node, w.worker_of_rank, first, stop)
        flat = positions.reshape(-1)
        valid = flat >= 0
        big = flat.copy()
        if self.perm is not None and valid.any():
            big[valid] = self.perm.take(flat[valid])
        return self.res.map(big).reshape(positions.shape)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Chunks of int64 sample ids in yield order (padding removed); empty chunks are skipped.

        A plan iterated to its end discards its artefacts from the store (the epoch is over; others
        still reading them keep their mapping). One stopped early leaves them for a resumption.
        """
        # Chunks start at one batch and double: the first batch only waits for what it needs.
        first, step = 0, 1
        while first < self.num_batches:
            step = min(step, self.batches_per_chunk)
            flat = self.batches(first, first + step).reshape(-1)
            ids = np.ascontiguousarray(flat[flat != -1])
            if len(ids):
                yield ids
            first, step = first + step, step * 2
        if self.perm is not None:
            self.perm.release()
        if self._work_key:
            self.store.discard(self._work_key)

    def sample_ids(self) -> np.ndarray:
        """The whole plan at once (for tests and small datasets)."""
        chunks = list(self)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
