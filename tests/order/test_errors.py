"""Invalid order arguments raise astreaming's errors (ValueError/KeyError compatible) naming the argument."""

from __future__ import annotations

import pytest

from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.order import (
    EmptyEpochError,
    EpochSpec,
    StreamWeights,
    World,
    apply_weights,
    generate_work,
    get_partitions,
    get_sampling,
    get_shuffle,
    plan_worker_epoch,
)


def test_replication_errors_name_the_factor() -> None:
    with pytest.raises(ConfigError, match="replication"):
        World(1, 4, 1, 0).replicate(3)
    with pytest.raises(ConfigError, match="replication"):
        World(1, 4, 1, 0).replicate(0)


def test_block_size_errors_name_shuffle_block_size() -> None:
    with pytest.raises(ConfigError, match="shuffle_block_size"):
        get_shuffle("py1br", [4, 4], 1, 0, 0, 1)
    with pytest.raises(ConfigError, match="shuffle_block_size"):
        get_shuffle("py1e", [4, 4], 1, 0, 0, 0)


def test_py1e_refuses_empty_canonical_nodes() -> None:
    with pytest.raises(ConfigError, match="num_canonical_nodes"):
        get_shuffle("py1e", [1, 1, 1], 4, 0, 0, 8)


def test_partition_errors() -> None:
    with pytest.raises(ConfigError, match="num_canonical_nodes=3"):
        get_partitions("orig", 10, 3, 2, 1, 1, 1)
    with pytest.raises(ConfigError, match="global batch size of 3"):
        get_partitions("relaxed", 12, 4, 3, 1, 1, 1, 0, 2)
    with pytest.raises(ConfigError, match=r"Resuming further into the dataset \(12\)"):
        get_partitions("orig", 10, 1, 1, 1, 1, 1, 12)
    with pytest.raises(EmptyEpochError), pytest.warns(UserWarning, match="0 samples"):
        get_partitions("orig", 0, 2, 1, 1, 1, 1)
    assert issubclass(EmptyEpochError, ZeroDivisionError) and issubclass(EmptyEpochError, ValueError)


def test_sampling_errors_name_the_argument() -> None:
    for kwargs, name in (
        ({"choose": -1}, "choose"),
        ({"granularity": 0}, "granularity"),
        ({"seed": -1}, "seed"),
        ({"epoch": -2}, r"epoch.*-2"),
    ):
        args = {
            "samples_per_shard": [3, 4],
            "choose": 5,
            "granularity": 1,
            "seed": 0,
            "epoch": 0,
            "use_epoch": True,
        }
        args.update(kwargs)
        with pytest.raises(ConfigError, match=name):
            get_sampling(**args)  # type: ignore[arg-type]


def test_weight_errors() -> None:
    with pytest.raises(ConfigError, match="error in stream 1"):
        apply_weights([StreamWeights(proportion=1), StreamWeights(repeat=2)], [3, 3], None, 0)
    with pytest.raises(ConfigError, match="epoch_size"):
        apply_weights([StreamWeights(choose=2), StreamWeights()], [3, 3], 5, 0)
    with pytest.raises(ConfigError, match="at most one"):
        StreamWeights(proportion=1, choose=2)
    with pytest.raises(ConfigError, match="repeat"):
        StreamWeights(repeat=-1)


def _two_streams(**kwargs: object) -> EpochSpec:
    base: dict[str, object] = {
        "batch_size": 2,
        "num_nodes": 1,
        "shuffle": True,
        "shuffle_block_size": 100,
        "weights": [StreamWeights(proportion=0.9), StreamWeights(proportion=0.1)],
    }
    base.update(kwargs)
    return EpochSpec.build([[10, 10], [10]], **base)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:Shuffle block size:UserWarning")
def test_batching_errors() -> None:
    spec = _two_streams(batching_method="stratified")
    with pytest.raises(ConfigError, match="stream 1 is 0"):
        plan_worker_epoch(spec, World(1, 1, 1, 0), 0)
    spec = _two_streams(batching_method="device_per_stream", num_canonical_nodes=3)
    with pytest.raises(ConfigError, match="3 canonical nodes and 2 physical nodes"):
        generate_work("device_per_stream", spec, World(2, 1, 1, 0), 0, 0)
    with pytest.raises(UnknownOptionError, match="batching_method"):
        generate_work("mixed", spec, World(1, 1, 1, 0), 0, 0)


def test_world_refuses_impossible_layouts() -> None:
    with pytest.raises(ConfigError, match="worker"):
        World(1, 2, 2, 4)
    with pytest.raises(ConfigError, match="ranks_per_node"):
        World(1, 0, 1, 0)
