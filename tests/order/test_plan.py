"""The worker plan, resumption helpers, spec defaults and the order package's contracts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.order import (
    NEVER,
    EpochSpec,
    StreamWeights,
    World,
    default_num_canonical_nodes,
    default_shuffle_block_size,
    get_partitions,
    get_shuffle,
    interleave_worker_batches,
    parse_epoch_size,
    plan_worker_epoch,
    resolve_resume,
    sample_in_epoch_after,
)


def _spec(**kwargs: object) -> EpochSpec:
    base: dict[str, object] = {"batch_size": 4, "num_nodes": 1, "shuffle": True, "shuffle_block_size": 16}
    base.update(kwargs)
    return EpochSpec.build([[7, 7, 6, 7, 8, 8, 6, 6, 5], [4, 6, 4, 6, 4, 1]], **base)  # type: ignore[arg-type]


def test_shard_first_need_and_order_are_the_first_use_of_each_shard() -> None:
    spec = _spec()
    world = World(1, 1, 2, 1)
    plan = plan_worker_epoch(spec, world, epoch=0)
    shards = spec.shard_of(plan.sample_ids)
    # Recompute by a plain scan: the first index of every shard in the worker's yield order.
    expected: dict[int, int] = {}
    for i, s in enumerate(shards.tolist()):
        expected.setdefault(s, i)
    assert plan.shard_order.tolist() == sorted(expected, key=expected.__getitem__)
    for shard in range(spec.num_shards):
        assert plan.shard_first_need[shard] == expected.get(shard, NEVER)
    assert plan.num_samples == len(plan.sample_ids) == sum(len(b) for b in plan.batches())


def test_shard_of_skips_empty_shards() -> None:
    spec = EpochSpec.build([[3, 0, 2]], batch_size=1, num_nodes=1)
    assert spec.shard_of(np.array([0, 2, 3, 4])).tolist() == [0, 0, 2, 2]


def test_two_workers_round_robin_give_the_rank_sequence() -> None:
    spec = _spec(shuffle=False)
    plans = [plan_worker_epoch(spec, World(1, 1, 2, w), 0) for w in range(2)]
    rank = interleave_worker_batches([p.batches() for p in plans])
    # Without shuffling and one canonical node the rank sees samples in order.
    assert np.concatenate(rank).tolist() == list(range(85))


def test_interleave_skips_exhausted_workers() -> None:
    a = [np.array([1]), np.array([2]), np.array([3])]
    b = [np.array([9])]
    assert [x.tolist() for x in interleave_worker_batches([a, b])] == [[1], [9], [2], [3]]


def test_resume_costs_no_more_than_a_fresh_plan_and_keeps_the_tail() -> None:
    spec = _spec()
    world = World(1, 1, 1, 0)
    full = plan_worker_epoch(spec, world, 1)
    resumed = plan_worker_epoch(spec, world, 1, sample_in_epoch=20)
    assert resumed.sample_ids.tolist() == full.sample_ids[20:].tolist()
    assert resumed.shard_first_need.min() == 0


def test_resolve_resume() -> None:
    ckpt = {
        "epoch": 2,
        "sample_in_epoch": 12,
        "num_canonical_nodes": 4,
        "shuffle_seed": 5,
        "initial_physical_nodes": 2,
    }
    fresh = resolve_resume(None, 3)
    assert (fresh.epoch, fresh.sample_in_epoch, fresh.stale) == (3, 0, False)
    point = resolve_resume(ckpt, 2)
    assert (
        point.epoch,
        point.sample_in_epoch,
        point.num_canonical_nodes,
        point.shuffle_seed,
        point.initial_physical_nodes,
        point.stale,
    ) == (2, 12, 4, 5, 2, False)
    stale = resolve_resume(ckpt, 3)
    assert (stale.epoch, stale.sample_in_epoch, stale.stale, stale.num_canonical_nodes) == (3, 0, True, None)
    with pytest.raises(ConfigError, match="sample_in_epoch"):
        resolve_resume({**ckpt, "sample_in_epoch": -1}, 0)


def test_sample_in_epoch_after() -> None:
    assert sample_in_epoch_after(12, 4) == 48
    assert sample_in_epoch_after(12, 4, replication=2, resumed_from=8) == 32


def test_with_resume_overrides_order_fields_and_redefaults_block() -> None:
    spec = EpochSpec.build([[10, 10]], batch_size=2, num_nodes=1)
    resumed = spec.with_resume(
        num_canonical_nodes=20, shuffle_seed=3, initial_physical_nodes=2, shuffle_block_size=None
    )
    assert (resumed.num_canonical_nodes, resumed.shuffle_seed, resumed.initial_physical_nodes) == (20, 3, 2)
    assert resumed.shuffle_block_size == 1 << 18 and spec.shuffle_block_size == 4_000_000


@pytest.mark.parametrize(
    ("algo", "nodes", "expected"),
    [("py1e", 2, 2), ("py1s", 2, 128), ("py2s", 1, 64), ("naive", 3, 3), ("py1br", 1, 1)],
)
def test_default_num_canonical_nodes(algo: str, nodes: int, expected: int) -> None:
    assert default_num_canonical_nodes(algo, nodes) == expected


def test_default_shuffle_block_size() -> None:
    assert [default_shuffle_block_size(c) for c in (1, 8, 16, 64)] == [4_000_000, 500_000, 262_144, 262_144]


def test_parse_epoch_size() -> None:
    assert [parse_epoch_size(v) for v in (None, 7, "100k", "64M", "2b")] == [
        None,
        7,
        100_000,
        64_000_000,
        2_000_000_000,
    ]
    with pytest.raises(ConfigError, match="epoch_size"):
        parse_epoch_size(-1)


def test_epoch_size_string_resolves_weights() -> None:
    spec = EpochSpec.build(
        [[4, 4], [8]],
        batch_size=1,
        num_nodes=1,
        epoch_size="0.032k",
        weights=[StreamWeights(proportion=1), StreamWeights(proportion=3)],
    )
    assert spec.epoch_size == 32 and spec.choose_per_stream == (8, 24)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("shuffle_algo", "py1b", UnknownOptionError),
        ("partition_algo", "x", UnknownOptionError),
        ("batching_method", "mixed", UnknownOptionError),
        ("sampling_method", "z", UnknownOptionError),
        ("batch_size", 0, ConfigError),
        ("sampling_granularity", 0, ConfigError),
    ],
)
def test_spec_refuses_bad_arguments_naming_them(field: str, value: object, error: type[Exception]) -> None:
    kwargs: dict[str, object] = {"batch_size": 1, "num_nodes": 1, field: value}
    with pytest.raises(error, match=field):
        EpochSpec.build([[3]], **kwargs)  # type: ignore[arg-type]


def test_unknown_names_raise_key_errors_too() -> None:
    with pytest.raises(KeyError):
        get_shuffle("py1b", [4], 1, 0, 0, 8)
    with pytest.raises(KeyError):
        get_partitions("nope", 10, 1, 2, 1, 1, 1, 0, 3)


def test_world_detect_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    world = World.detect()
    assert (world.num_nodes, world.ranks_per_node, world.rank, world.node, world.rank_of_node) == (
        2,
        4,
        5,
        1,
        1,
    )
    assert (world.workers_per_rank, world.worker_of_rank) == (1, 0)
    monkeypatch.setenv("WORLD_SIZE", "6")
    with pytest.raises(ConfigError, match="LOCAL_WORLD_SIZE"):
        World.detect()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="RANK"):
        World.detect()


def test_world_detect_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert World.detect() == World(1, 1, 1, 0)


def test_order_package_imports_no_torch() -> None:
    code = "import sys, astreaming.order as o; o.World.detect(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_spec_and_plan_pickle_for_dataloader_workers() -> None:
    import pickle

    spec = _spec(replication=None)
    clone = pickle.loads(pickle.dumps(spec))
    world = World(1, 2, 2, 3)
    assert np.array_equal(
        plan_worker_epoch(clone, world, 2).sample_ids, plan_worker_epoch(spec, world, 2).sample_ids
    )
    plan = pickle.loads(pickle.dumps(plan_worker_epoch(spec, world, 2)))
    assert plan.world == world and plan.epoch == 2


def test_resuming_at_the_end_of_the_epoch_gives_an_empty_plan() -> None:
    spec = _spec()
    plan = plan_worker_epoch(spec, World(1, 1, 1, 0), 0, sample_in_epoch=spec.epoch_size)
    assert plan.num_samples == 0 and plan.batches() == [] and len(plan.shard_order) == 0
    assert (plan.shard_first_need == NEVER).all()
