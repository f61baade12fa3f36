"""Batching methods: how an epoch's samples are grouped into global batches and dealt to workers."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from astreaming.errors import UnknownOptionError
from astreaming.order.spec import EpochSpec
from astreaming.order.world import World

__all__ = ["BATCHING_METHODS", "generate_work", "worker_work"]

WorkFn = Callable[[EpochSpec, World, int, int], np.ndarray]

#: method -> its module here (``generate_work_<method>`` in ``<method>.py``), imported when first used.
BATCHING_METHODS = ("random", "stratified", "per_stream", "device_per_stream")


def _method(batching_method: str) -> WorkFn:
    if batching_method not in BATCHING_METHODS:
        raise UnknownOptionError(
            f"batching_method: unknown method {batching_method!r}; expected one of {sorted(BATCHING_METHODS)}"
        )
    module = importlib.import_module(f"{__name__}.{batching_method}")
    fn: WorkFn = getattr(module, f"generate_work_{batching_method}")
    return fn


def generate_work(
    batching_method: str, dataset: EpochSpec, world: World, epoch: int, sample_in_epoch: int
) -> np.ndarray:
    """The epoch's full (P, R, W, batches, B) array of sample ids, -1 padding (mosaic's ``generate_work``).

    Args:
        batching_method: ``random``, ``stratified``, ``per_stream`` or ``device_per_stream``.
        dataset: The order description of the dataset.
        world: The parallel (replicated) world; only its layout is used, not its worker.
        epoch: Epoch.
        sample_in_epoch: Samples of this epoch already consumed over all ranks (resumption).
    """
    return _method(batching_method)(dataset, world, epoch, sample_in_epoch)


def worker_work(dataset: EpochSpec, world: World, epoch: int, sample_in_epoch: int) -> np.ndarray:
    """The (batches, B) sample ids of ``world``'s worker, -1 for padding.

    Random batching computes only this worker's part; the other methods build the epoch and slice it.
    """
    if dataset.batching_method == "random":
        from astreaming.order.batching.random import random_worker_ids

        return random_worker_ids(dataset, world, epoch, sample_in_epoch)
    full = _method(dataset.batching_method)(dataset, world, epoch, sample_in_epoch)
    return np.ascontiguousarray(full[world.node, world.rank_of_node, world.worker_of_rank])
