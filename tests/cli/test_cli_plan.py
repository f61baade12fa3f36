"""``astreaming plan``: per-rank orders equal mosaic's golden iteration output; the figures by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import RunCLI

from astreaming import MDSWriter, Stream, StreamingDataset
from astreaming.cli.plancalc import cache_peak, shuffle_spread

GOLDEN = Path(__file__).parent.parent / "golden" / "iteration"
DATASET_A = GOLDEN / "datasets" / "A"
# Single-stream cases of dataset A without a checkpoint (mosaic 0.13.0's output for real ranks/workers).
CASES = [
    "A_noshuffle_w0",
    "A_noshuffle_w2",
    "A_py1e_defaults_w2",
    "A_naive_c2_bs10_r2_w2",
    "A_py1s_c2_bs10_r2_w2",
    "A_py2s_c2_bs10_r2_w2",
    "A_py1br_c2_bs10_r2_w2",
    "A_py1e_c2_bs10_r2_w2",
    "A_py1s_default_ncn",
    "A_py1e_p2r2_w2",
    "A_py1br_r3_w0",
    "A_epoch_size_40",
    "A_orig_c3_noshuffle_w2",
    "A_py2s_bs1_w2",
    # Several streams (mixing, batching methods), replication, fixed sampling:
    "ABC_proportion_random_r2_w2",
    "AB_repeat_choose_noshuffle",
    "AB_stratified_r2",
    "ABC_per_stream_w2",
    "AB_device_per_stream_r2_w2",
    "AB_device_per_stream_p2",
    "A_replication2_ws4",
    "A_epoch_size_100_fixed_gran3_p2",
]
_FLAGS = {
    "shuffle_algo": "--shuffle-algo",
    "num_canonical_nodes": "--num-canonical-nodes",
    "shuffle_block_size": "--shuffle-block-size",
    "batch_size": "--batch-size",
    "shuffle_seed": "--seed",
    "epoch_size": "--epoch-size",
    "partition_algo": "--partition-algo",
    "batching_method": "--batching-method",
    "replication": "--replication",
    "sampling_method": "--sampling-method",
    "sampling_granularity": "--sampling-granularity",
}


def _case(name: str) -> dict[str, Any]:
    cases = json.loads((GOLDEN / "cases.json").read_text())["cases"]
    return next(c for c in cases if c["name"] == name)


def _args(case: dict[str, Any]) -> list[str]:
    kwargs, world = case["dataset_kwargs"], case["world"]
    args = [str(GOLDEN / "datasets" / stream["dataset"]) for stream in case["streams"]]
    args += [
        "--nodes",
        str(world["world_size"] // world["local_world_size"]),
        "--ranks-per-node",
        str(world["local_world_size"]),
        "--workers",
        str(world["num_workers"]),
    ]
    for key, value in kwargs.items():
        if key in _FLAGS:
            args += [_FLAGS[key], str(value)]
    if not kwargs.get("shuffle"):
        args.append("--no-shuffle")
    for weight in ("proportion", "repeat", "choose"):
        values = [str((stream.get("kwargs") or {}).get(weight, "")) for stream in case["streams"]]
        if set(values) != {""}:
            args += [f"--{weight}", ",".join(values)]
    return args


def _shard_bounds(case: dict[str, Any]) -> np.ndarray:
    """Global sample id bounds of every shard, over the case's streams in order."""
    sizes = [
        shard["samples"]
        for stream in case["streams"]
        for shard in json.loads((GOLDEN / "datasets" / stream["dataset"] / "index.json").read_text())[
            "shards"
        ]
    ]
    return np.cumsum(sizes)


@pytest.mark.parametrize("name", CASES)
def test_plan_matches_golden_iteration(run_cli: RunCLI, name: str) -> None:
    case = _case(name)
    for epoch in case["expected"]["epochs"][:2]:
        proc = run_cli("plan", *_args(case), "--epoch", str(epoch["epoch"]), "--samples", "100", "--json")
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        want = [[i for batch in rank for i in batch] for rank in epoch["ranks"]]
        assert [r["first_samples"] for r in plan["ranks"]] == [w[:100] for w in want]
        assert [r["samples"] for r in plan["ranks"]] == [len(w) for w in want]
        bounds = _shard_bounds(case)
        for rank, ids in zip(plan["ranks"], want, strict=True):
            shards = np.searchsorted(bounds, ids, side="right")
            assert rank["first_shards"] == list(dict.fromkeys(int(s) for s in shards[:100]))


def test_plan_text_output_and_settings(run_cli: RunCLI) -> None:
    proc = run_cli("plan", DATASET_A, "--nodes", "2", "--ranks-per-node", "2", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "9 shards, 60 samples" in proc.stdout
    assert "2 nodes x 2 ranks x 0 workers, batch 2, canonical nodes 2" in proc.stdout
    assert "py1e, block 2,000,000, seed 9176" in proc.stdout  # mosaic's max(4M // C, 2**18) for C=2
    assert "shuffle spread:" in proc.stdout and "node  cache" in proc.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--nodes", "0"], "--nodes: must be >= 1"),
        (["--ranks", "5"], "--ranks: ranks must be in [0, 1)"),
        (["--shuffle-algo", "py9"], "invalid choice"),
    ],
)
def test_plan_bad_arguments(run_cli: RunCLI, args: list[str], expected: str) -> None:
    proc = run_cli("plan", DATASET_A, *args)
    assert proc.returncode in (1, 2) and expected in proc.stderr


def test_plan_missing_dataset(run_cli: RunCLI, tmp_path: Path) -> None:
    proc = run_cli("plan", tmp_path)
    assert proc.returncode == 1 and "no index.json there" in proc.stderr


def test_cache_peak_by_hand() -> None:
    sizes = np.array([10, 20, 40])
    assert cache_peak([np.array([0, 0, 1, 1])], sizes) == 20  # one shard at a time
    assert cache_peak([np.array([0, 1, 0, 1])], sizes) == 30  # both held from position 1 to 2
    # Two ranks stepping together: t=0 holds shards 0 and 1 (30), t=1 shards 0 and 2 (50).
    assert cache_peak([np.array([0, 0]), np.array([1, 2])], sizes) == 50
    assert cache_peak([np.array([2, 2, 2])], sizes) == 40


def test_shuffle_spread_by_hand() -> None:
    # Pairs (0,2) and (1,3): mean distance 2, expectation (4 + 1) / 3.
    assert shuffle_spread(np.array([0, 1, 0, 1])) == pytest.approx(2 / (5 / 3))
    assert shuffle_spread(np.array([0, 0, 1, 1])) == pytest.approx(1 / (5 / 3))
    rng = np.random.default_rng(0)
    uniform = rng.permutation(np.repeat(np.arange(200), 50))
    assert shuffle_spread(uniform) == pytest.approx(1.0, abs=0.02)
    assert shuffle_spread(np.sort(uniform)) < 0.01


def test_plan_of_mixed_streams_is_what_streaming_dataset_yields(
    run_cli: RunCLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = 0
    for name, count in (("a", 70), ("b", 45)):
        with MDSWriter(out=str(tmp_path / name), columns={"id": "int"}, size_limit=120) as w:
            for i in range(count):
                w.write({"id": offset + i})  # the global sample id over both streams
        offset += count
    settings = {"shuffle": True, "batch_size": 3, "epoch_size": 90, "shuffle_block_size": 20}
    proc = run_cli(
        "plan", tmp_path / "a", tmp_path / "b", "--proportion", "0.7,0.3", "--epoch-size", "90",
        "--nodes", "2", "--ranks-per-node", "2", "--replication", "2", "--batch-size", "3",
        "--shuffle-block-size", "20", "--samples", "1000", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    chosen = [s["choose"] for s in plan["streams"]]
    assert sum(chosen) == 90 and abs(chosen[0] - 63) <= 1  # 70% of the epoch, the rest drawn by seed
    for rank in range(4):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "4")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        streams = [
            Stream(local=str(tmp_path / "a"), proportion=0.7),
            Stream(local=str(tmp_path / "b"), proportion=0.3),
        ]
        with StreamingDataset(streams=streams, replication=2, **settings) as ds:  # type: ignore[arg-type]
            yielded = [int(sample["id"]) for sample in ds]
        assert plan["ranks"][rank]["first_samples"] == yielded, rank
        assert sum(plan["ranks"][rank]["per_stream"]) == len(yielded)
    # Replication: ranks 0 and 1 (and 2 and 3) see the same samples.
    assert plan["ranks"][0]["first_samples"] == plan["ranks"][1]["first_samples"]
    assert plan["ranks"][0]["first_samples"] != plan["ranks"][2]["first_samples"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--proportion", "0.5"], "--proportion: 1 values for 2 datasets"),
        (["--repeat", "x,1"], "--repeat: expected numbers"),
        (["--choose", "1.5,"], "--choose: a number of samples"),
        (["--proportion", "0.5,", "--repeat", ",2"], "proportion"),  # mosaic: all relative or none
    ],
)
def test_plan_bad_weights(run_cli: RunCLI, args: list[str], expected: str) -> None:
    proc = run_cli("plan", DATASET_A, GOLDEN / "datasets" / "B", *args)
    assert proc.returncode == 1 and expected in proc.stderr, proc.stderr
