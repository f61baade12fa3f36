"""Pieces of the per-stream batching methods, computed per lookup instead of per epoch.

- :class:`StreamSource`: one stream's epoch (its resampling, partition and shuffle); the sample ids at
  any partition positions, computing only those (the shuffle through
  :class:`~astreaming.order.perm.PermSource`).
- :class:`Origins`: which stream each batch of the epoch comes from (mosaic shuffles one label per batch)
  and, for any batch, its rank among the batches of its stream. One byte or two per batch, shared.
"""

from __future__ import annotations

import numpy as np

from astreaming.order.batching._common import resample
from astreaming.order.partition import partition_layout
from astreaming.order.perm import PermSource
from astreaming.order.spec import EpochSpec
from astreaming.order.store import Arrays, PlanStore

__all__ = ["STEP", "Origins", "StreamSource", "origin_arrays"]

#: Batches between two stored checkpoints of per-stream batch counts (a rank lookup scans at most this).
STEP = 1 << 14


class StreamSource:
    """One stream's epoch, partitioned over ``shape`` = (P, R, W, B) and shuffled with block ``block``.

    Construction does what building the stream's whole epoch does first (the partition's and shuffle's
    warnings and errors, in mosaic's order) without building it.
    """

    def __init__(
        self,
        spec: EpochSpec,
        epoch: int,
        stream: int,
        shape: tuple[int, int, int, int],
        block: int,
        store: PlanStore,
    ) -> None:
        self.res = resample(spec, epoch, stream)
        self.layout = partition_layout(
            spec.partition_algo,
            self.res.epoch_size,
            spec.num_canonical_nodes,
            *shape,
            0,
            spec.initial_physical_nodes,
        )
        self.perm = (
            PermSource(spec, self.res, epoch, store, block=block, tag=f"-s{stream}") if spec.shuffle else None
        )

    def ids(self, positions: np.ndarray) -> np.ndarray:
        """Sample ids at partition ``positions`` (any shape); -1 stays -1."""
        flat = np.asarray(positions, np.int64).reshape(-1)
        big = flat.copy()
        valid = flat >= 0
        if self.perm is not None and valid.any():
            big[valid] = self.perm.take(flat[valid])
        return self.res.map(big).reshape(np.shape(positions))

    def release(self) -> None:
        """Discard the stream's shuffle artefacts (the epoch is over)."""
        if self.perm is not None:
            self.perm.release()


def origin_arrays(groups: list[list[int]], seed: int) -> Arrays:
    """Mosaic's batch labels: per group (a node, or the whole epoch), ``counts[s]`` labels ``s`` in stream
    order, shuffled in place by one generator seeded ``seed``, group after group.

    A shuffle's draws depend on the array's length only, so labels one byte wide (two beyond 127
    streams) give mosaic's int64 permutation. ``checkpoints`` hold, per group and every :data:`STEP`
    batches, how many batches of each stream came before (within the group).
    """
    streams = len(groups[0]) if groups else 0
    dtype = np.int8 if streams < 127 else np.int16 if streams < 32767 else np.int32
    rng = np.random.default_rng(seed)
    labels, points, starts, point_starts = [], [], [0], [0]
    for counts in groups:
        group = np.repeat(np.arange(streams, dtype=dtype), counts)
        rng.shuffle(group)
        labels.append(group)
        before = np.zeros(streams, np.int64)
        for first in range(0, len(group), STEP):
            points.append(before.copy())
            before += np.bincount(group[first : first + STEP], minlength=streams)
        starts.append(starts[-1] + len(group))
        point_starts.append(len(points))
    return {
        "labels": np.concatenate(labels) if labels else np.zeros(0, dtype),
        "checkpoints": np.array(points, np.int64).reshape(-1, streams),
        "starts": np.array(starts, np.int64),
        "point_starts": np.array(point_starts, np.int64),
    }


class Origins:
    """Lookups in :func:`origin_arrays`' output: a batch's stream and its rank among that stream's."""

    def __init__(self, arrays: Arrays) -> None:
        self.labels = arrays["labels"]
        self.checkpoints = arrays["checkpoints"]
        self.starts = np.asarray(arrays["starts"], np.int64)
        self.point_starts = np.asarray(arrays["point_starts"], np.int64)

    def size(self, group: int) -> int:
        """Batches in ``group``."""
        return int(self.starts[group + 1] - self.starts[group])

    def lookup(self, group: int, batches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stream, rank within the stream)`` of batches ``batches`` (< :meth:`size`) of ``group``.

        Scans the labels from the checkpoint before the first batch asked for to the last one.
        """
        batches = np.asarray(batches, np.int64)
        if not len(batches):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        base = int(batches.min()) // STEP * STEP
        offset = int(self.starts[group])
        seg = np.asarray(self.labels[offset + base : offset + int(batches.max()) + 1], np.int64)
        # Rank of each label among equal labels of the segment: a stable sort groups them in order.
        order = np.argsort(seg, kind="stable")
        ordered = seg[order]
        within = np.empty(len(seg), np.int64)
        within[order] = np.arange(len(seg)) - np.searchsorted(ordered, ordered, side="left")
        point = self.checkpoints[int(self.point_starts[group]) + base // STEP]
        stream = seg[batches - base]
        return stream, point[stream] + within[batches - base]
