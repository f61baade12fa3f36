"""Every case of golden/order (produced by mosaicml-streaming 0.13.0) reproduced exactly.

Values, raised exception types (ours derive from the recorded builtin) and warning categories must match.
numpy's arithmetic RuntimeWarnings that mosaic emits on 0-sample shards ("divide by zero encountered in
scalar floor_divide") are not reproduced: 0-sample shards are legal, and astreaming handles them without
dividing by zero. Every other recorded warning is.
"""

from __future__ import annotations

import builtins
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming.order import (
    EpochSpec,
    StreamWeights,
    World,
    apply_weights,
    generate_work,
    get_partitions,
    get_sampling,
    get_shuffle,
    resample_streams,
)

GOLDEN = Path(__file__).parent.parent / "golden" / "order"
GROUPS = (
    "shuffle",
    "partitions",
    "sampling",
    "apply_weights",
    "replication",
    "resample_streams",
    "generate_work",
    "device_per_stream",  # benchmarks/peers/gen_device_per_stream.py (issue 9)
)
_NUMPY_NOISE = ("RuntimeWarning: divide by zero encountered in scalar",)


def _cases(group: str) -> list[Any]:
    cases = json.loads((GOLDEN / f"{group}.json").read_text())["cases"]
    return [pytest.param(case, id=f"{group}-{i}") for i, case in enumerate(cases)]


def _weights(stream: dict[str, Any]) -> StreamWeights:
    return StreamWeights(**stream.get("weights", {}))


def _run_resample(args: dict[str, Any]) -> dict[str, Any]:
    sizes = [s["shard_sizes"] for s in args["streams"]]
    weighted, epoch_size = apply_weights(
        [_weights(s) for s in args["streams"]],
        [sum(s) for s in sizes],
        args.get("epoch_size"),
        args["shuffle_seed"],
    )
    res = resample_streams(
        sizes,
        [w.choose for w in weighted],
        seed=args["shuffle_seed"],
        epoch=args["epoch"],
        sampling_method=args["sampling_method"],
        sampling_granularity=args.get("sampling_granularity", 1),
        shuffle=args["shuffle"],
        stream_id=args["stream_id"],
    )
    return {
        "epoch_size": epoch_size,
        "choose_per_stream": [w.choose for w in weighted],
        "shuffle_units": res.shuffle_units.tolist(),
        "small_per_big": res.small_per_big().tolist(),
    }


def golden_spec(args: dict[str, Any]) -> EpochSpec:
    """The spec of a golden ``generate_work`` case."""
    world = args["world"]
    return EpochSpec.build(
        [s["shard_sizes"] for s in args["streams"]],
        weights=[_weights(s) for s in args["streams"]],
        batch_size=args["batch_size"],
        num_nodes=world["num_nodes"],
        epoch_size=args.get("epoch_size"),
        num_canonical_nodes=args["num_canonical_nodes"],
        shuffle=args["shuffle"],
        shuffle_algo=args["shuffle_algo"],
        shuffle_seed=args["shuffle_seed"],
        shuffle_block_size=args["shuffle_block_size"],
        partition_algo=args["partition_algo"],
        batching_method=args["batching_method"],
        sampling_method=args["sampling_method"],
        initial_physical_nodes=args["initial_physical_nodes"],
    )


def _run_generate_work(args: dict[str, Any]) -> dict[str, Any]:
    world = args["world"]
    spec = golden_spec(args)
    w = World(world["num_nodes"], world["ranks_per_node"], world["workers_per_rank"], 0)
    out = generate_work(args["batching_method"], spec, w, args["epoch"], args["sample_in_epoch"])
    return {"shape": list(out.shape), "flat": out.reshape(-1).tolist(), "epoch_size": spec.epoch_size}


def _run_apply_weights(args: dict[str, Any]) -> dict[str, Any]:
    weighted, epoch_size = apply_weights(
        [StreamWeights(**s) for s in args["streams"]],
        args["samples_per_stream"],
        args["choose_per_epoch"],
        args["seed"],
    )
    return {
        "epoch_size": epoch_size,
        "streams": [{"choose": w.choose, "repeat": w.repeat, "proportion": w.proportion} for w in weighted],
    }


def _run_replication(args: dict[str, Any]) -> dict[str, Any]:
    world = World(args["num_nodes"], args["ranks_per_node"], args["workers_per_rank"], args["worker"])
    replicated = world.replicate(args["replication"])
    keys = (
        "node",
        "num_nodes",
        "rank",
        "num_ranks",
        "rank_of_node",
        "ranks_per_node",
        "worker",
        "num_workers",
        "worker_of_node",
        "workers_per_node",
        "worker_of_rank",
        "workers_per_rank",
        "is_leader",
        "is_local_leader",
    )
    return {
        "world": {k: getattr(world, k) for k in keys},
        "replicated": {k: getattr(replicated, k) for k in keys},
    }


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "get_shuffle": lambda a: {"perm": get_shuffle(**a).tolist()},
    "get_partitions": lambda a: (lambda r: {"shape": list(r.shape), "flat": r.reshape(-1).tolist()})(
        get_partitions(**a)
    ),
    "get_sampling": lambda a: {"choose_per_shard": get_sampling(**a).tolist()},
    "apply_weights": _run_apply_weights,
    "world_replicate": _run_replication,
    "resample_streams": _run_resample,
    "generate_work": _run_generate_work,
}


def _same(got: Any, expected: Any) -> bool:
    """Exact equality; floats exactly, with mosaic's non-finite floats written as strings."""
    if isinstance(expected, str) and isinstance(got, float):
        return math.isnan(got) if expected == "nan" else got == float(expected)
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() >= expected.keys()
            and all(_same(got[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(_same, got, expected))
    return (type(got) is type(expected) and got == expected) or (
        isinstance(expected, float) and isinstance(got, float) and got == expected
    )


@pytest.mark.parametrize("case", [c for g in GROUPS for c in _cases(g)])
def test_golden_case(case: dict[str, Any]) -> None:
    expected = dict(case["expected"])
    recorded = [w for w in expected.pop("warnings", []) if not w.startswith(_NUMPY_NOISE)]
    runner = RUNNERS[case["fn"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if "raises" in expected:
            builtin = getattr(builtins, expected["raises"]["type"])
            with pytest.raises(builtin):
                runner(case["args"])
            result: dict[str, Any] = {}
        else:
            result = runner(case["args"])
    got_categories = sorted(w.category.__name__ for w in caught)
    assert got_categories == sorted(w.split(":", 1)[0] for w in recorded)
    for key, value in expected.items():
        if key != "raises":
            assert _same(result[key], value), key


def test_golden_files_cover_every_group() -> None:
    counts = {g: len(json.loads((GOLDEN / f"{g}.json").read_text())["cases"]) for g in GROUPS}
    assert counts == {
        "shuffle": 1697,
        "partitions": 222,
        "sampling": 724,
        "apply_weights": 25,
        "replication": 14,
        "resample_streams": 95,
        "generate_work": 34,
        "device_per_stream": 29,
    }
    assert np.__version__  # the cases pin numpy's PCG64 streams; see golden README
