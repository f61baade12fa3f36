"""``perm[positions]`` of one epoch's shuffle, computing (and sharing) only what is looked up.

Every algorithm first replays the epoch's draws once and keeps what later lookups need (O(spans) or
O(blocks) memory, one artefact the node shares); a lookup then redoes only the work of the positions
asked for:

- ``py1e`` (:mod:`~astreaming.order.shuffle.py1e_lazy`): a few batches (the first after a start or
  resume) read a :data:`CELL`-slot cell of node offsets and replay the shuffles of their own spans; a
  steady consumer reads whole :data:`GRID`-slot windows of big ids.
- ``py1s``, ``py2s`` (:mod:`~astreaming.order.shuffle.pieces`): one span (a shard) shuffled again per
  distinct span asked for.
- ``py1br``: its blocks (``shuffle_block_size`` samples) are shared artefacts, like py1e's windows.
- ``naive``: one permutation of the whole epoch, which no lookup can cut short: a shared artefact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from astreaming.order.resample import Resampled
from astreaming.order.shuffle import check_shuffle_args
from astreaming.order.shuffle.pieces import (
    piece_values,
    py1br_cluster,
    py1br_draws,
    py1br_values,
    py1s_draws,
    py2s_draws,
)
from astreaming.order.shuffle.py1e_lazy import (
    group_indices,
    py1e_draws,
    py1e_offsets,
    py1e_slots,
    py1e_values,
    warn_block,
)
from astreaming.order.spec import EpochSpec
from astreaming.order.store import Arrays, PlanStore, id_dtype, plan_key

__all__ = ["CELL", "GRID", "PermSource"]

#: Slots of a canonical node's order computed (and shared) at a time by the windowed py1e.
GRID = 1 << 20
#: Slots of the cells of node offsets read by small requests (the first batches after a start or resume).
CELL = 1 << 16


class PermSource:
    """``perm[positions]`` of one epoch's shuffle, computing only what is looked up.

    Args:
        spec: The dataset's order description.
        res: The epoch's resampled units (of all streams, or of the one stream shuffled alone).
        epoch: The epoch.
        store: Where the shuffle's artefacts are computed and shared.
        block: Shuffle block size (default: the spec's; the per-stream batching methods scale it).
        tag: Names what ``res`` covers when it is not the whole epoch (e.g. one stream), so that its
            artefacts get their own keys.

    Raises:
        UnknownOptionError, ConfigError: as :func:`~astreaming.order.shuffle.get_shuffle` does.
    """

    def __init__(
        self,
        spec: EpochSpec,
        res: Resampled,
        epoch: int,
        store: PlanStore,
        *,
        block: int | None = None,
        tag: str = "",
    ) -> None:
        self.store = store
        self.algo = algo = spec.shuffle_algo
        units = res.shuffle_units
        c, seed = spec.num_canonical_nodes, spec.shuffle_seed
        block = spec.shuffle_block_size if block is None else block
        check_shuffle_args(algo, c, block)
        # The whole epoch's shuffle keeps its key; a stream's adds its tag and block.
        extra = (block,) if tag else ()
        self.key = plan_key(f"perm-{algo}{tag}", spec, epoch, *extra)
        self.epoch_size = res.epoch_size
        # Artefacts read recently, by (node or 0, level or 0, index), and the keys of small ones to discard.
        self._chunks: dict[tuple[int, int, int], np.ndarray] = {}
        self._small: set[str] = set()
        self.draws: Arrays = {}
        if algo == "py1e":
            self.draws = store.get(self.key, lambda: py1e_draws(units, c, seed, epoch, block))
            warn_block(self.draws)
            self.bounds = np.asarray(self.draws["node_bounds"], np.int64)
        elif algo == "py1s":
            self.draws = store.get(self.key, lambda: py1s_draws(units, c, seed, epoch))
        elif algo == "py2s":
            self.draws = store.get(self.key, lambda: py2s_draws(units, c, seed, epoch))
        elif algo == "py1br":
            self.draws = store.get(self.key, lambda: py1br_draws(units, c, seed, epoch, block))
        else:

            def whole() -> Arrays:
                # mosaic's permutation(N) shuffles arange(N): shuffling it in int32 (where ids fit) draws
                # the same and holds a third of the int64 array plus its int32 copy.
                perm = np.arange(self.epoch_size, dtype=id_dtype(self.epoch_size))
                np.random.default_rng(seed + epoch).shuffle(perm)
                return {"perm": perm}

            self.perm = store.get(self.key, whole)["perm"]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The big ids at epoch ``positions`` (all valid, i.e. >= 0)."""
        if self.algo == "py1e":
            return self._take_py1e(positions)
        if self.algo in ("py1s", "py2s"):
            return piece_values(self.draws, positions)
        if self.algo == "py1br":
            return py1br_values(self.draws, positions, self._cluster)
        return np.asarray(self.perm[positions], np.int64)

    def release(self) -> None:
        """Discard this epoch's artefacts from the store (processes that mapped them keep reading them).

        Every shared window or block of the epoch goes, also those a stopped run of the same epoch left
        behind, and the smaller cells this process used.
        """
        if self.algo == "py1e":
            sizes = np.diff(self.bounds).tolist()
            for node, size in enumerate(sizes):
                for grid in range(-(-int(size) // GRID)):
                    self.store.discard(self._cell_key(node, GRID, grid))
        elif self.algo == "py1br":
            for index in range(len(self.draws["cluster_lo"])):
                self.store.discard(self._cluster_key(index))
        for key in self._small:
            self.store.discard(key)
        self._small.clear()
        self._chunks.clear()
        self.store.discard(self.key)

    # -- py1e ------------------------------------------------------------------------------------------

    def _take_py1e(self, positions: np.ndarray) -> np.ndarray:
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

    def _cell_key(self, node: int, level: int, cell: int) -> str:
        return f"{self.key}-n{node}-g{cell}" if level == GRID else f"{self.key}-n{node}-l{level}-c{cell}"

    def _cell(self, node: int, level: int, cell: int) -> np.ndarray:
        draws, first = self.draws, cell * level

        def compute() -> Arrays:
            if level == GRID:
                slots = py1e_slots(draws, node, first, first + level)
            else:
                slots = py1e_offsets(draws, node, first, first + level)
            return {"perm": slots.astype(id_dtype(self.epoch_size))}

        # The small cells of a start (a few hundred KB) stay in the store until the epoch's end.
        return self._artefact((node, level, cell), self._cell_key(node, level, cell), compute, level == GRID)

    # -- py1br -----------------------------------------------------------------------------------------

    def _cluster_key(self, index: int) -> str:
        return f"{self.key}-k{index}"

    def _cluster(self, index: int) -> np.ndarray:
        def compute() -> Arrays:
            return {"perm": py1br_cluster(self.draws, index).astype(id_dtype(self.epoch_size))}

        return self._artefact((0, 0, index), self._cluster_key(index), compute, True)

    def _artefact(
        self, where: tuple[int, int, int], key: str, compute: Callable[[], Arrays], forget: bool
    ) -> np.ndarray:
        """Artefact ``key`` (computed through the store), remembered by ``where``.

        Consumers move forward: what lies two artefacts behind on the same (node, level) is forgotten,
        and with ``forget`` also discarded from the store (a shared one too; a straggler recomputes it).
        """
        found = self._chunks.get(where)
        if found is not None:
            return found
        chunk: np.ndarray = self.store.get(key, compute)["perm"]
        node, level, index = where
        for old in [k for k in self._chunks if k[:2] == (node, level) and k[2] < index - 1]:
            del self._chunks[old]
            if forget:
                self.store.discard(self._cell_key(*old) if self.algo == "py1e" else self._cluster_key(old[2]))
        if not forget:
            self._small.add(key)
        self._chunks[where] = chunk
        return chunk
