"""The ``orig`` partition, computed per worker by arithmetic on positions (no epoch-sized arrays).

Mosaic builds a (C, S') array of canonical rows, interleaves it into one stream X (``X[j]`` is row ``j % C``,
column ``j // C``), drops the first D positions, deals X round-robin to nodes, then a node's list
round-robin to its ranks, pads each rank with -1 to whole rounds of ``W * B`` and deals batches round-robin
to workers. Every one of those steps is an index map, so one worker's positions are computed directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.quiet import warn

__all__ = ["EmptyEpochError", "OrigLayout", "orig_layout"]

log = logging.getLogger(__name__)


class EmptyEpochError(ConfigError, ZeroDivisionError):
    """There are no samples to partition (mosaic fails with ZeroDivisionError here)."""


@dataclass(frozen=True)
class OrigLayout:
    """Everything that fixes the ``orig`` partition of one epoch.

    Attributes:
        num_samples: N, positions 0..N-1 of the epoch.
        num_canonical_nodes: C.
        num_physical_nodes: P.
        ranks_per_node: R.
        workers_per_rank: W.
        batch_size: B (per device).
        drop_first: D, already rounded down to a multiple of P.
        row_len: S' = samples per canonical row after padding.
        real_len: S = ceil(N / C), the row length before padding.
        ratio: P // C when there are more physical than canonical nodes, else 1.
        pad: S' - S, columns added so that each row splits evenly over its ``ratio`` nodes.
        tiny: True when the dataset is tiled cyclically over the canonical rows (too few samples).
        node_len: L = samples per physical node after dropping D.
        rank_len: samples per rank before -1 padding.
        batches_per_worker: batches each worker gets.
    """

    num_samples: int
    num_canonical_nodes: int
    num_physical_nodes: int
    ranks_per_node: int
    workers_per_rank: int
    batch_size: int
    drop_first: int
    row_len: int
    real_len: int
    ratio: int
    pad: int
    tiny: bool
    node_len: int
    rank_len: int
    batches_per_worker: int

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(P, R, W, batches_per_worker, B)."""
        return (
            self.num_physical_nodes,
            self.ranks_per_node,
            self.workers_per_rank,
            self.batches_per_worker,
            self.batch_size,
        )

    def canonical(self, j: np.ndarray) -> np.ndarray:
        """``X[j]``: the position at index ``j`` of the interleaved canonical stream."""
        n, c = self.num_samples, self.num_canonical_nodes
        row, col = j % c, j // c
        if self.tiny:
            return np.asarray((row * self.row_len + col) % n, dtype=np.int64)
        if self.pad:
            # Padding columns repeat earlier columns of the same row (mosaic copies a slice of columns).
            first_pad = self.row_len - self.pad
            col = np.where(col >= first_pad, col - self.pad - self.ratio + 1, col)
        base = row * n // c
        length = (row + 1) * n // c - base
        # A row one sample short repeats its last real sample in its last column.
        short = (length < self.real_len) & (col == self.real_len - 1)
        return np.asarray(base + col - short, dtype=np.int64)

    def node_positions(self, node: int | np.ndarray, k: np.ndarray) -> np.ndarray:
        """Positions at indices ``k`` (< L, or in the rank-padding tail) of node ``node``'s list.

        ``node`` may be an array (one node per index), as the device-per-stream batching reads many.
        """
        n_len, r = self.node_len, self.ranks_per_node
        if n_len % r:
            extra = r - n_len % r
            # The tail borrows the `extra` samples just before the node's last R samples; a node too short
            # for that is tiled cyclically.
            k = np.where(k >= n_len, k - r - extra + 1, k) if r + extra - 1 <= n_len else k % n_len
        return self.canonical(self.drop_first + node + k * self.num_physical_nodes)

    def worker_positions(
        self, node: int, rank_of_node: int, worker_of_rank: int, first: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """The (batches, B) positions of one worker's batches ``first..stop``, -1 for padding."""
        w, b = self.workers_per_rank, self.batch_size
        stop = self.batches_per_worker if stop is None else min(stop, self.batches_per_worker)
        first = min(first, stop)
        batch = np.arange(first, stop, dtype=np.int64) * w + worker_of_rank
        i = (batch[:, None] * b + np.arange(b, dtype=np.int64)[None, :]).reshape(-1)
        real = i < self.rank_len
        out = np.full(i.shape, -1, dtype=np.int64)
        if real.any():
            out[real] = self.node_positions(node, i[real] * self.ranks_per_node + rank_of_node)
        return out.reshape(stop - first, b)

    def full(self) -> np.ndarray:
        """The whole (P, R, W, batches, B) array, as mosaic returns it."""
        return assemble(self)


class _Layout(Protocol):
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def num_physical_nodes(self) -> int: ...
    @property
    def ranks_per_node(self) -> int: ...
    @property
    def workers_per_rank(self) -> int: ...

    def worker_positions(
        self, node: int, rank_of_node: int, worker_of_rank: int, first: int = 0, stop: int | None = None
    ) -> np.ndarray: ...


def assemble(layout: _Layout) -> np.ndarray:
    """A layout's whole (P, R, W, batches, B) array, built from every worker's positions."""
    out = np.empty(layout.shape, dtype=np.int64)
    for p in range(layout.num_physical_nodes):
        for r in range(layout.ranks_per_node):
            for w in range(layout.workers_per_rank):
                out[p, r, w] = layout.worker_positions(p, r, w)
    return out


def orig_layout(
    num_samples: int,
    num_canonical_nodes: int,
    num_physical_nodes: int,
    ranks_per_node: int,
    workers_per_rank: int,
    batch_size: int,
    drop_first: int = 0,
) -> OrigLayout:
    """Validate the arguments and size the ``orig`` partition (mosaicml-streaming's ``get_partitions_orig``).

    Emits mosaic's UserWarnings when samples must be repeated to fill canonical nodes or ranks.

    Raises:
        ConfigError: if C and P do not divide one another, or resuming past the end of the epoch.
        EmptyEpochError: if there are no samples.
    """
    n, c, p, r = num_samples, num_canonical_nodes, num_physical_nodes, ranks_per_node
    for name, value in (
        ("num_canonical_nodes", c),
        ("num_physical_nodes", p),
        ("ranks_per_node", r),
        ("workers_per_rank", workers_per_rank),
        ("batch_size", batch_size),
    ):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if n < 0 or drop_first < 0:
        raise ConfigError(f"num_samples ({n}) and drop_first ({drop_first}) must be non-negative")
    if c % p and p % c:
        raise ConfigError(
            "Either canonical or physical nodes must be evenly divisible by the other, otherwise striping "
            "slices of shards over nodes may lead to each node downloading all shards "
            f"(num_canonical_nodes={c}, physical nodes={p})"
        )
    world = p * r
    if n and drop_first > n + (world - n % world):
        raise ConfigError(f"Resuming further into the dataset ({drop_first}) than it has samples ({n})")
    if drop_first % p:
        log.warning("drop_first %d is not a multiple of %d physical nodes: rounding it down", drop_first, p)
        drop_first -= drop_first % p
    real_len = -(-n // c)
    ratio = p // c if c < p else 1
    pad = (ratio - real_len % ratio) % ratio
    row_len = real_len + pad
    tiny = n < c or (n == c and c < p)
    if tiny:
        warn(
            f"Trying to partition {n} samples over {c} canonical nodes. This will result in many samples "
            "being repeated, and depending on your batching method, batches being completely dropped. Check "
            "if your dataset has the expected number of samples, and consider decreasing the number of "
            "canonical nodes.",
            UserWarning,
            stacklevel=3,
        )
        if n == 0:
            raise EmptyEpochError(f"cannot partition 0 samples over {c} canonical nodes")
    elif pad and row_len - 2 * pad - ratio + 1 < 0:
        # mosaic fails to broadcast its padding columns here (ValueError); say why instead.
        raise ConfigError(
            f"cannot pad {real_len} samples per canonical node to a multiple of {ratio} physical nodes per "
            f"canonical node (num_samples={n}, num_canonical_nodes={c}, physical nodes={p})"
        )
    node_len = max(0, (c * row_len - drop_first) // p)
    if node_len % r and r + (r - node_len % r) - 1 > node_len:
        warn(
            f"Attempting to partition {node_len} samples per physical node over {r} gpus. This will result "
            "in many samples being repeated, and depending on your batching method, batches being completely "
            "dropped. Check if your dataset has the expected number of samples.",
            UserWarning,
            stacklevel=3,
        )
    rank_len = -(-node_len // r)
    per_round = workers_per_rank * batch_size
    batches_per_worker = -(-rank_len // per_round)
    return OrigLayout(
        n,
        c,
        p,
        r,
        workers_per_rank,
        batch_size,
        drop_first,
        row_len,
        real_len,
        ratio,
        pad,
        tiny,
        node_len,
        rank_len,
        batches_per_worker,
    )
