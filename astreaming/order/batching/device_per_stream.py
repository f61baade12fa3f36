"""``device_per_stream`` batching: every device batch comes from a single stream."""

from __future__ import annotations

import logging

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching._common import drop_and_layout, stream_ids
from astreaming.order.spec import EpochSpec
from astreaming.order.world import World

log = logging.getLogger(__name__)

__all__ = ["generate_work_device_per_stream", "stream_block"]


def stream_block(spec: EpochSpec, index: int) -> int:
    """Stream ``index``'s shuffle block: the spec's, scaled by the stream's proportion.

    Raises:
        ConfigError: if it rounds to 0 while shuffling (the stream would give no samples).
    """
    proportion = spec.proportion_per_stream[index]
    block = int(spec.shuffle_block_size * proportion)
    if block == 0 and spec.shuffle:
        raise ConfigError(
            f"Samples from stream {index} are not being used. Please either increase the "
            f"`shuffle_block_size` from {spec.shuffle_block_size}, or increase the stream proportion "
            f"from {proportion}."
        )
    return block


def generate_work_device_per_stream(
    spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int
) -> np.ndarray:
    """The full (P, R, W, batches, B) array of sample ids for device-per-stream batching.

    Raises:
        ConfigError: if C is not a multiple of P, or a stream's proportional block size is 0.
    """
    c, p, b = spec.num_canonical_nodes, world.num_nodes, spec.batch_size
    if c % p:
        raise ConfigError(
            "For `device_per_stream` batching, num_canonical_nodes must be divisible by physical nodes. Got "
            f"{c} canonical nodes and {p} physical nodes."
        )
    rows_per_node = c // p
    node_batches: list[list[np.ndarray]] = [[] for _ in range(p)]
    for index in range(len(spec.samples_per_shard)):
        block = stream_block(spec, index)
        # Partition over C "nodes" (one per canonical node) with the real ranks and workers and batch 1,
        # then read each physical node's canonical nodes in traversal order (batch, worker, node, rank).
        # The workers matter: their -1 padding lands inside the traversal.
        ids = stream_ids(spec, epoch, index, (c, world.ranks_per_node, world.workers_per_rank, 1), block)
        for node in range(p):
            part = ids[node * rows_per_node : (node + 1) * rows_per_node]
            flat = part.transpose(3, 2, 0, 1, 4).reshape(-1)
            # mosaic pads to whole device batches (a whole batch of -1 when already whole), then keeps
            # as many leading batches as there are batches without -1 (so a batch holding -1 can stay
            # and a later full one go).
            rows = np.concatenate((flat, np.full(b - len(flat) % b, -1, np.int64))).reshape(-1, b)
            full = int(np.count_nonzero(rows.min(axis=1) >= 0))
            if not full:
                raise ConfigError(
                    f"Stream with index {index} does not have an adequate number of samples to construct "
                    f"even a single device batch of size {b}. Training will occur without any samples from "
                    "this stream!"
                )
            node_batches[node].append(rows[:full])
    balanced = spec.shuffle and spec.sampling_method == "balanced"
    rng = np.random.default_rng(spec.shuffle_seed + epoch if balanced else spec.shuffle_seed)
    ordered = []
    for node in range(p):
        streams = node_batches[node]
        origins = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(streams)])
        rng.shuffle(origins)
        out = np.empty((len(origins), b), dtype=np.int64)
        for index, batches in enumerate(streams):
            out[origins == index] = batches
        ordered.append(out)
    devices = world.ranks_per_node
    most = max(len(o) for o in ordered)
    # mosaic pads every node to a multiple of *all* devices (P * R), always adding at least one round.
    rounds = most + (p * devices - most % (p * devices))
    stacked = np.full((rounds, p, b), -1, dtype=np.int64)
    for node, out in enumerate(ordered):
        stacked[: len(out), node] = out
    global_batch = p * devices * b
    if sample_in_epoch % global_batch:
        # mosaic drops the partial global batch silently here (no warning); log it.
        log.info(
            "%s batching resumes at whole global batches: skipping to batch %d (sample_in_epoch %d)",
            "device_per_stream",
            sample_in_epoch // global_batch,
            sample_in_epoch,
        )
    return drop_and_layout(
        stacked.reshape(-1, global_batch), sample_in_epoch, p, devices, world.workers_per_rank, b
    )
