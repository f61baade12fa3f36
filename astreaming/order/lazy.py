"""A worker's epoch plan computed in the order it is consumed, chunk by chunk.

:class:`LazyWorkerPlan` yields the same sample ids as :func:`astreaming.order.plan.plan_worker_epoch`
(the eager reference), in chunks, without ever holding the epoch:

- ``random`` batching: the worker's partition positions are arithmetic (a range of its batches at a
  time); the shuffle is looked up through :class:`PermSource`. py1e, the default, is windowed
  (:mod:`astreaming.order.shuffle.py1e_lazy`): its draws are replayed once and each window of a
  canonical node's order ("grid chunk", :data:`GRID` slots) is sorted on its own when first needed. The
  other algorithms cannot be windowed (a shuffle's draws depend on the values drawn), so their whole
  permutation is one artefact.
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
from astreaming.order.resample import Resampled
from astreaming.order.shuffle import get_shuffle
from astreaming.order.shuffle.py1e_lazy import (
    group_indices,
    py1e_draws,
    py1e_offsets,
    py1e_slots,
    py1e_values,
    warn_block,
)
from astreaming.order.spec import EpochSpec
from astreaming.order.store import MemoryStore, PlanStore, id_dtype, plan_key
from astreaming.order.world import World

__all__ = ["GRID", "LazyWorkerPlan", "PermSource"]

#: Slots of a canonical node's order computed (and shared) at a time by the windowed py1e.
GRID = 1 << 20
#: Slots of the cells of node offsets read by small requests (the first batches after a start or resume).
CELL = 1 << 16
#: Samples per chunk a plan yields (a chunk's ids are the only per-sample array a worker holds).
CHUNK = 1 << 16


class PermSource:
    """``perm[positions]`` of one epoch's shuffle, computing only what is looked up."""

    def __init__(self, spec: EpochSpec, res: Resampled, epoch: int, store: PlanStore) -> None:
        self.store = store
        units = res.shuffle_units
        c, seed, block = spec.num_canonical_nodes, spec.shuffle_seed, spec.shuffle_block_size
        self.windowed = spec.shuffle_algo == "py1e"
        self.key = plan_key(f"perm-{spec.shuffle_algo}", spec, epoch)
        self._chunks: dict[tuple[int, int, int], np.ndarray] = {}
        self._small: set[str] = set()
        if self.windowed:
            self.draws = store.get(self.key, lambda: py1e_draws(units, c, seed, epoch, block))
            warn_block(self.draws)
            self.bounds = np.asarray(self.draws["node_bounds"], np.int64)
        else:

            def whole() -> dict[str, np.ndarray]:
                perm = get_shuffle(spec.shuffle_algo, units, c, seed, epoch, block)
                return {"perm": perm.astype(id_dtype(len(perm)))}

            self.perm = store.get(self.key, whole)["perm"]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The big ids at epoch ``positions`` (all valid, i.e. >= 0)."""
        if not self.windowed:
            return np.asarray(self.perm[positions], np.int64)
        node = np.searchsorted(self.bounds, positions, side="right") - 1
        slot = positions - self.bounds[node]
        out = np.empty(len(positions), np.int64)
        for k, pick in group_indices(node):
            slots = slot[pick]
            # A request of a few batches (the first after a start or resume) reads CELL-slot cells of
            # node offsets and computes the values of its own slots only; a steady consumer reads whole
            # GRID windows of values. Either costs one pass over the draws within reach of the cell.
            low, high = int(slots.min()), int(slots.max()) + 1
            level = CELL if high - low <= CELL < GRID else GRID
            cells = slots // level
            for cell, where in group_indices(cells):
                found = self._cell(k, level, cell)[slots[where] - cell * level]
                # Small cells hold node offsets: the values of just the slots asked for cost one span
                # shuffle each, where a whole cell's would cost one per span within reach.
                out[pick[where]] = found if level == GRID else py1e_values(self.draws, k, found)
        return out

    def release(self) -> None:
        """Discard this epoch's artefacts from the store (processes that mapped them keep reading them).

        Every GRID window of the epoch goes, also those a stopped run of the same epoch left behind,
        and the smaller cells this process used.
        """
        if self.windowed:
            sizes = np.diff(self.bounds).tolist()
            for node, size in enumerate(sizes):
                for grid in range(-(-int(size) // GRID)):
                    self.store.discard(self._cell_key(node, GRID, grid))
            for key in self._small:
                self.store.discard(key)
        self._small.clear()
        self._chunks.clear()
        self.store.discard(self.key)

    def _cell_key(self, node: int, level: int, cell: int) -> str:
        return f"{self.key}-n{node}-g{cell}" if level == GRID else f"{self.key}-n{node}-l{level}-c{cell}"

    def _cell(self, node: int, level: int, cell: int) -> np.ndarray:
        found = self._chunks.get((node, level, cell))
        if found is not None:
            return found
        key = self._cell_key(node, level, cell)
        draws, first = self.draws, cell * level

        def compute() -> dict[str, np.ndarray]:
            if level == GRID:
                slots = py1e_slots(draws, node, first, first + level)
            else:
                slots = py1e_offsets(draws, node, first, first + level)
            return {"perm": slots.astype(id_dtype(int(self.bounds[-1])))}

        chunk = self.store.get(key, compute)["perm"]
        # Consumers move forward through a node: forget what lies two cells behind. GRID windows go from
        # the store too (also a shared one; a straggler recomputes them); the small cells of a start
        # (a few KB) stay until the epoch's end.
        for old in [k for k in self._chunks if k[:2] == (node, level) and k[2] < cell - 1]:
            del self._chunks[old]
            if level == GRID:
                self.store.discard(self._cell_key(*old))
        if level != GRID:
            self._small.add(key)
        self._chunks[(node, level, cell)] = chunk
        return chunk


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
