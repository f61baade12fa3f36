"""One worker's batches for ``stratified``, ``per_stream`` and ``device_per_stream`` batching, by lookup.

The eager functions (:mod:`.stratified`, :mod:`.per_stream`, :mod:`.device_per_stream`) build every
stream's epoch and the whole (P, R, W, batches, B) array; they stay as the reference. Here a worker
computes only the batches it is asked for:

- which global batch a worker's batch is, where it sits in it, and which stream (and which of that
  stream's batches) fills it, is index arithmetic plus, for the two methods that shuffle batch labels,
  a lookup in the shared :class:`~.stream_source.Origins` (a byte or two per batch of the epoch);
- a stream batch's partition positions are arithmetic (the ``orig`` layout), and their sample ids come
  from :class:`~.stream_source.StreamSource` (the lazy shuffle of that stream).

So a worker holds O(streams + shards + its chunk) plus the shared labels and shuffle artefacts, never
the epoch. Which stream batches are complete follows from the layouts: padding (-1) only ever ends a
rank's list, at the same index on every rank, so the complete batches of a stream are a prefix.
"""

from __future__ import annotations

import logging
import warnings
from typing import Protocol

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching.device_per_stream import stream_block
from astreaming.order.batching.stratified import stream_portions
from astreaming.order.batching.stream_source import Origins, StreamSource, origin_arrays
from astreaming.order.spec import EpochSpec
from astreaming.order.store import PlanStore, plan_key
from astreaming.order.world import World

log = logging.getLogger(__name__)

__all__ = ["BatchSource", "worker_batch_source"]


class BatchSource(Protocol):
    """A worker's batches, computed on demand."""

    num_batches: int

    def batches(self, first: int, stop: int) -> np.ndarray:
        """Sample ids of the worker's batches ``first..stop`` as (batches, B), -1 for padding."""
        ...

    def release(self) -> None:
        """Discard the epoch's shared artefacts (the epoch is over)."""
        ...


def worker_batch_source(
    spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int, store: PlanStore
) -> BatchSource:
    """The batch source of ``world``'s worker for the spec's (non-``random``) batching method.

    Raises:
        ConfigError: as the eager method does, with the same warnings on the way.
    """
    if spec.batching_method == "stratified":
        return StratifiedSource(spec, world, epoch, sample_in_epoch, store)
    if spec.batching_method == "per_stream":
        return PerStreamSource(spec, world, epoch, sample_in_epoch, store)
    return DevicePerStreamSource(spec, world, epoch, sample_in_epoch, store)


def _log_skip(method: str, sample_in_epoch: int, global_batch: int) -> None:
    if sample_in_epoch % global_batch:
        # mosaic drops the partial global batch silently here (no warning); log it.
        log.info(
            "%s batching resumes at whole global batches: skipping to batch %d (sample_in_epoch %d)",
            method,
            sample_in_epoch // global_batch,
            sample_in_epoch,
        )


class _Dealt:
    """The deal shared by every method: after dropping ``skip`` global batches of ``total``, global batch
    ``skip + round * W + worker`` goes to ``worker``; a device reads its own ``B`` slots of it."""

    def __init__(self, world: World, batch_size: int, total: int, skip: int) -> None:
        self.world, self.batch_size = world, batch_size
        self.total, self.skip = total, skip
        self.num_batches = -(-max(0, total - skip) // world.workers_per_rank)
        self.device = world.node * world.ranks_per_node + world.rank_of_node

    def global_batches(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Global batch of each of the worker's batches ``first..stop``, and whether it exists."""
        stop = min(stop, self.num_batches)
        rounds = np.arange(first, max(first, stop), dtype=np.int64)
        k = self.skip + rounds * self.world.workers_per_rank + self.world.worker_of_rank
        return k, k < self.total

    def release(self) -> None:
        """Nothing shared by default."""


class StratifiedSource(_Dealt):
    """``stratified``: global batch k holds rows k of every stream's epoch cut in its portion."""

    def __init__(self, spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int, store: PlanStore):
        global_batch = spec.batch_size * world.num_ranks
        self.portions = stream_portions(spec.proportion_per_stream, global_batch)
        self.streams: list[StreamSource] = []
        for index, portion in enumerate(self.portions.tolist()):
            block = int(spec.shuffle_block_size * spec.proportion_per_stream[index])
            # A stream's epoch on a (1, 1, 1, 1) world: flat index i is position node_positions(0, i).
            self.streams.append(StreamSource(spec, epoch, index, (1, 1, 1, 1), block, store))
            if portion == 0:
                raise ConfigError(
                    f"Number of samples for stream {index} is 0 because the portion of this stream in the "
                    f"global batch, which is of size {global_batch}, is too low. Please increase the "
                    f"global batch size or increase the proportion of total samples that come from stream "
                    f"{index}."
                )
        count = min(
            s.layout.base.batches_per_worker // p
            for s, p in zip(self.streams, self.portions.tolist(), strict=True)
        )
        if sample_in_epoch % global_batch:
            warnings.warn(
                f"Because of the `stratified` batching method, resumption may only occur on a sample that is "
                f"a multiple of the current global batch size of {global_batch}. Resuming training after the "
                f"most recently finished global batch (sample_in_epoch {sample_in_epoch}).",
                UserWarning,
                stacklevel=4,
            )
        super().__init__(world, spec.batch_size, count, sample_in_epoch // global_batch)
        # This device's slots of a global batch: (stream, offset within the stream's portion).
        slots = self.device * spec.batch_size + np.arange(spec.batch_size, dtype=np.int64)
        ends = np.cumsum(self.portions)
        self.slot_stream = np.searchsorted(ends, slots, side="right")
        self.slot_offset = slots - (ends - self.portions)[self.slot_stream]

    def batches(self, first: int, stop: int) -> np.ndarray:
        """Sample ids of the worker's batches ``first..stop`` as (batches, B), -1 for padding."""
        k, real = self.global_batches(first, stop)
        out = np.full((len(k), self.batch_size), -1, np.int64)
        rows = k[real]
        for stream in np.unique(self.slot_stream).tolist():
            cols = np.flatnonzero(self.slot_stream == stream)
            flat = rows[:, None] * int(self.portions[stream]) + self.slot_offset[cols][None, :]
            source = self.streams[stream]
            positions = source.layout.base.node_positions(0, flat.reshape(-1)).reshape(flat.shape)
            out[np.ix_(np.flatnonzero(real), cols)] = source.ids(positions)
        return out

    def release(self) -> None:
        """Discard every stream's shuffle artefacts."""
        for source in self.streams:
            source.release()


class _Labelled(_Dealt):
    """A method whose batches carry shuffled stream labels (:class:`Origins`), shared through the store."""

    def _labels(
        self, spec: EpochSpec, world: World, epoch: int, store: PlanStore, groups: list[list[int]]
    ) -> None:
        balanced = spec.shuffle and spec.sampling_method == "balanced"
        seed = spec.shuffle_seed + epoch if balanced else spec.shuffle_seed
        layout = (world.num_nodes, world.ranks_per_node, world.workers_per_rank)
        self.store = store
        self.labels_key = plan_key(f"labels-{spec.batching_method}", spec, epoch, layout)
        self.origins = Origins(store.get(self.labels_key, lambda: origin_arrays(groups, seed)))

    def release(self) -> None:
        """Discard the labels and every stream's shuffle artefacts."""
        self.store.discard(self.labels_key)
        for source in self.streams:
            source.release()

    streams: list[StreamSource]


class PerStreamSource(_Labelled):
    """``per_stream``: each global batch is a complete global batch of one stream's own partition."""

    def __init__(self, spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int, store: PlanStore):
        shape = (world.num_nodes, world.ranks_per_node, world.workers_per_rank, spec.batch_size)
        global_batch = spec.batch_size * world.num_ranks
        self.streams = []
        counts = []
        for index in range(len(spec.samples_per_shard)):
            block = int(spec.shuffle_block_size * spec.proportion_per_stream[index])
            source = StreamSource(spec, epoch, index, shape, block, store)
            self.streams.append(source)
            # A stream's global batch t (batch t // W of worker t % W on every device) is complete while
            # every device's slots are below the (common) rank length of the layout it is cut from.
            base = source.layout.base
            counts.append(base.rank_len // base.batch_size)
        for index, count in enumerate(counts):
            if not count:
                raise ConfigError(
                    f"Stream with index {index} does not have an adequate number of samples to construct a "
                    f"complete global batch of {global_batch}. Training will occur without any samples from "
                    "this stream."
                )
        self._labels(spec, world, epoch, store, [counts])
        _log_skip("per_stream", sample_in_epoch, global_batch)
        super().__init__(world, spec.batch_size, sum(counts), sample_in_epoch // global_batch)

    def batches(self, first: int, stop: int) -> np.ndarray:
        """Sample ids of the worker's batches ``first..stop`` as (batches, B), -1 for padding."""
        k, real = self.global_batches(first, stop)
        out = np.full((len(k), self.batch_size), -1, np.int64)
        where = np.flatnonzero(real)
        stream_of, row_of = self.origins.lookup(0, k[real])
        w, world = self.world.workers_per_rank, self.world
        for stream in np.unique(stream_of).tolist():
            pick = np.flatnonzero(stream_of == stream)
            rows = row_of[pick]
            source = self.streams[stream]
            for worker in np.unique(rows % w).tolist():
                sub = pick[rows % w == worker]
                j = row_of[sub] // w
                low = int(j.min())
                positions = source.layout.worker_positions(
                    world.node, world.rank_of_node, worker, low, int(j.max()) + 1
                )[j - low]
                out[where[sub]] = source.ids(positions)
        return out


class DevicePerStreamSource(_Labelled):
    """``device_per_stream``: each device batch holds ``B`` consecutive samples of one stream, as one
    physical node's canonical nodes traverse that stream's partition."""

    def __init__(self, spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int, store: PlanStore):
        c, p, b = spec.num_canonical_nodes, world.num_nodes, spec.batch_size
        if c % p:
            raise ConfigError(
                "For `device_per_stream` batching, num_canonical_nodes must be divisible by physical nodes. "
                f"Got {c} canonical nodes and {p} physical nodes."
            )
        self.rows_per_node = c // p
        self.streams = []
        counts = []
        for index in range(len(spec.samples_per_shard)):
            block = stream_block(spec, index)
            # One partition "node" per canonical node, with the real ranks and workers and batch 1.
            shape = (c, world.ranks_per_node, world.workers_per_rank, 1)
            source = StreamSource(spec, epoch, index, shape, block, store)
            self.streams.append(source)
            # A physical node's traversal (batch, worker, its canonical nodes, rank) is real for the first
            # rank_len rounds; mosaic keeps the batches of b without -1: those inside that prefix.
            real = source.layout.base.rank_len * self.rows_per_node * world.ranks_per_node
            if not real // b:
                raise ConfigError(
                    f"Stream with index {index} does not have an adequate number of samples to construct "
                    f"even a single device batch of size {b}. Training will occur without any samples from "
                    "this stream!"
                )
            counts.append(real // b)
        self._labels(spec, world, epoch, store, [counts] * p)
        devices = p * world.ranks_per_node
        self.per_node = sum(counts)
        # mosaic stacks the nodes' batches, padding every node to a multiple of all devices (at least one
        # more round); R stacked rows of every node make one global batch.
        rounds = self.per_node + (devices - self.per_node % devices)
        global_batch = devices * b
        _log_skip("device_per_stream", sample_in_epoch, global_batch)
        super().__init__(world, b, rounds // world.ranks_per_node, sample_in_epoch // global_batch)
        # Slot `device` of a global batch is stacked row (k * R + device // P) of node device % P.
        self.node_of = self.device % p
        self.row_in = self.device // p

    def batches(self, first: int, stop: int) -> np.ndarray:
        """Sample ids of the worker's batches ``first..stop`` as (batches, B), -1 for padding."""
        k, real = self.global_batches(first, stop)
        row = k * self.world.ranks_per_node + self.row_in
        real &= row < self.per_node
        out = np.full((len(k), self.batch_size), -1, np.int64)
        where = np.flatnonzero(real)
        stream_of, rank_of = self.origins.lookup(self.node_of, row[real])
        ranks = self.world.ranks_per_node
        per_round = self.rows_per_node * ranks
        for stream in np.unique(stream_of).tolist():
            pick = np.flatnonzero(stream_of == stream)
            # Stream batch r of this node is traversal entries r*b .. r*b+b-1: round t, then canonical
            # node and rank within the round.
            entry = rank_of[pick][:, None] * self.batch_size + np.arange(self.batch_size)[None, :]
            t, inside = np.divmod(entry, per_round)
            canonical = self.node_of * self.rows_per_node + inside // ranks
            source = self.streams[stream]
            positions = source.layout.base.node_positions(canonical, t * ranks + inside % ranks)
            out[where[pick]] = source.ids(positions.reshape(entry.shape))
        return out
