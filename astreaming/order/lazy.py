"""A worker's epoch plan computed in the order it is consumed, chunk by chunk.

:class:`LazyWorkerPlan` yields the same sample ids as :func:`astreaming.order.plan.plan_worker_epoch`
(the eager reference), in chunks, without ever holding the epoch:

- ``random`` batching: the worker's partition positions are arithmetic (a range of its batches at a
  time); the shuffle is looked up through :class:`~astreaming.order.perm.PermSource`, which computes
  only the positions asked for (every algorithm but ``naive``; see :mod:`astreaming.order.perm`).
- the other batching methods (:mod:`astreaming.order.batching.worker_sources`): a batch's stream and
  place in it are index arithmetic plus a shared label per batch; its ids come from that stream's lazy
  shuffle. No epoch-sized array is built.

Artefacts come from a :class:`~astreaming.order.store.PlanStore`. With the engine's store (the cache
directory) an artefact is computed by the first process of the node that needs it and memory-mapped by
the others, so a node computes each once and a worker holds only its current chunk in private memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching._common import resample
from astreaming.order.batching.random import worker_layout
from astreaming.order.spec import EpochSpec
from astreaming.order.store import MemoryStore, PlanStore
from astreaming.order.world import World

if TYPE_CHECKING:
    from astreaming.order.batching.worker_sources import BatchSource
    from astreaming.order.perm import PermSource

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
        # Where iteration starts (start_after): a batch of this worker, and samples of it left out.
        self.first_batch, self.first_offset = 0, 0
        self._source: BatchSource | None = None
        if spec.batching_method == "random":
            self.res = resample(spec, epoch)
            self.layout = worker_layout(spec, world, self.res.epoch_size, sample_in_epoch)
            self.num_batches = self.layout.base.batches_per_worker
            self.perm: PermSource | None = None
            if spec.shuffle:
                # Imported only when used: an unshuffled walk needs no shuffle algorithm.
                from astreaming.order.perm import PermSource

                self.perm = PermSource(spec, self.res, epoch, self.store)
        else:
            from astreaming.order.batching.worker_sources import worker_batch_source

            self.perm = None
            self._source = worker_batch_source(spec, world, epoch, sample_in_epoch, self.store)
            self.num_batches = self._source.num_batches

    def start_after(self, yielded: int) -> None:
        """Iterate from after this worker's first ``yielded`` samples (torchdata's ``samples_yielded``
        of a restored DataLoader worker), computing nothing of the plan before them.

        Padding (-1) only ever ends a worker's part: each of its batches is full up to its last
        non-empty one, the only one that may be partial, and every batch after that is empty. (In the
        ``orig`` and ``relaxed`` layouts a worker's batch ``t`` holds rank entries ``(t*W + w)*B ..`` of
        every device it is cut from, and all of them have the same length; the other batching methods
        deal whole global batches, real ones first.) So sample ``yielded`` is sample ``yielded % B``
        (padding left out) of batch ``yielded // B``; a ``yielded`` at or past the part's end leaves
        nothing to iterate.

        Raises:
            ConfigError: ``yielded`` is negative.
        """
        if yielded < 0:
            raise ConfigError(f"samples already yielded must be >= 0, got {yielded}")
        self.first_batch, self.first_offset = divmod(yielded, self.spec.batch_size)

    @property
    def remaining_batches(self) -> int:
        """Batches iteration visits (the part's from :meth:`start_after`'s batch on; padding included)."""
        return max(0, self.num_batches - self.first_batch)

    def batches(self, first: int, stop: int) -> np.ndarray:
        """Sample ids of this worker's batches ``first..stop`` as (batches, B), -1 for padding."""
        stop = min(stop, self.num_batches)
        if self._source is not None:
            return self._source.batches(first, stop)
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

        A plan iterated to its end discards its artefacts from the store (:meth:`release`: the epoch is
        over; others still reading them keep their mapping). One stopped early leaves them for a
        resumption.
        """
        yield from self.chunks()
        self.release()

    def chunks(self) -> Iterator[np.ndarray]:
        """The chunks of ``iter(plan)``, without the :meth:`release` at their end: for a consumer that
        computes chunks ahead of their use (a walk's look-ahead reaches the plan's end long before the
        epoch's end), which calls :meth:`release` itself once it is done."""
        # Chunks start at one batch and double: the first batch only waits for what it needs.
        first, step, drop = self.first_batch, 1, self.first_offset
        while first < self.num_batches:
            step = min(step, self.batches_per_chunk)
            flat = self.batches(first, first + step).reshape(-1)
            ids = np.ascontiguousarray(flat[flat != -1][drop:])
            if len(ids):
                yield ids
            first, step, drop = first + step, step * 2, 0

    def release(self) -> None:
        """Discard this epoch's artefacts from the store (processes that mapped them keep reading them;
        one that needs them later computes them again)."""
        if self.perm is not None:
            self.perm.release()
        if self._source is not None:
            self._source.release()

    def sample_ids(self) -> np.ndarray:
        """The whole plan at once (for tests and small datasets)."""
        chunks = list(self)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
