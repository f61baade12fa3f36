"""Sample order: world, partitions, shuffles, sampling and mixing, batching, epoch plans. Pure numpy, no I/O.

The functions keep mosaicml-streaming 0.13's names and arguments (``get_shuffle``, ``get_partitions``,
``get_sampling``, ``apply_weights``, ``resample_streams``, ``generate_work``) and reproduce its order exactly.

The names below are imported on first use: importing one submodule (``order.weights`` for a stream's
weights) does not import every algorithm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from astreaming._lazy import lazy_exports

if TYPE_CHECKING:
    from astreaming.order.batching import (
        generate_work,
        worker_work,
    )
    from astreaming.order.partition import (
        EmptyEpochError,
        get_partitions,
        partition_layout,
    )
    from astreaming.order.plan import (
        NEVER,
        ResumePoint,
        WorkerPlan,
        dataset_len,
        interleave_worker_batches,
        plan_worker_epoch,
        resolve_resume,
        sample_in_epoch_after,
    )
    from astreaming.order.resample import (
        Resampled,
        resample_streams,
    )
    from astreaming.order.sampling import (
        get_sampling,
    )
    from astreaming.order.shuffle import (
        get_shuffle,
        iter_shuffle,
    )
    from astreaming.order.spec import (
        EpochSpec,
        default_num_canonical_nodes,
        default_shuffle_block_size,
        parse_epoch_size,
    )
    from astreaming.order.weights import (
        StreamWeights,
        WeightedStream,
        apply_weights,
    )
    from astreaming.order.world import (
        World,
    )

_EXPORTS = {
    **dict.fromkeys(["generate_work", "worker_work"], "astreaming.order.batching"),
    **dict.fromkeys(["EmptyEpochError", "get_partitions", "partition_layout"], "astreaming.order.partition"),
    **dict.fromkeys(
        [
            "NEVER",
            "ResumePoint",
            "WorkerPlan",
            "dataset_len",
            "interleave_worker_batches",
            "plan_worker_epoch",
            "resolve_resume",
            "sample_in_epoch_after",
        ],
        "astreaming.order.plan",
    ),
    **dict.fromkeys(["Resampled", "resample_streams"], "astreaming.order.resample"),
    "get_sampling": "astreaming.order.sampling",
    **dict.fromkeys(["get_shuffle", "iter_shuffle"], "astreaming.order.shuffle"),
    **dict.fromkeys(
        ["EpochSpec", "default_num_canonical_nodes", "default_shuffle_block_size", "parse_epoch_size"],
        "astreaming.order.spec",
    ),
    **dict.fromkeys(["StreamWeights", "WeightedStream", "apply_weights"], "astreaming.order.weights"),
    "World": "astreaming.order.world",
}

__all__ = [
    "NEVER",
    "EmptyEpochError",
    "EpochSpec",
    "Resampled",
    "ResumePoint",
    "StreamWeights",
    "WeightedStream",
    "WorkerPlan",
    "World",
    "apply_weights",
    "dataset_len",
    "default_num_canonical_nodes",
    "default_shuffle_block_size",
    "generate_work",
    "get_partitions",
    "get_sampling",
    "get_shuffle",
    "interleave_worker_batches",
    "iter_shuffle",
    "parse_epoch_size",
    "partition_layout",
    "plan_worker_epoch",
    "resample_streams",
    "resolve_resume",
    "sample_in_epoch_after",
    "worker_work",
]

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
