"""``astreaming plan``: per-rank orders equal mosaic's golden iteration output; the figures by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import RunCLI

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
]
_FLAGS = {
    "shuffle_algo": "--shuffle-algo",
    "num_canonical_nodes": "--num-canonical-nodes",
    "shuffle_block_size": "--shuffle-block-size",
    "batch_size": "--batch-size",
    "shuffle_seed": "--seed",
    "epoch_size": "--epoch-size",
    "partition_algo": "--partition-algo",
}


def _case(name: str) -> dict[str, Any]:
    cases = json.loads((GOLDEN / "cases.json").read_text())["cases"]
    return next(c for c in cases if c["name"] == name)


def _args(case: dict[str, Any]) -> list[str]:
    kwargs, world = case["dataset_kwargs"], case["world"]
    args = [
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
    return args


@pytest.mark.parametrize("name", CASES)
def test_plan_matches_golden_iteration(run_cli: RunCLI, name: str) -> None:
    case = _case(name)
    for epoch in case["expected"]["epochs"][:2]:
        proc = run_cli(
            "plan", DATASET_A, *_args(case), "--epoch", str(epoch["epoch"]), "--samples", "100", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        want = [[i for batch in rank for i in batch] for rank in epoch["ranks"]]
        assert [r["first_samples"] for r in plan["ranks"]] == want
        assert [r["samples"] for r in plan["ranks"]] == [len(w) for w in want]
        # Dataset A's shards hold 7, 7, 6, 7, 8, 8, 6, 6, 5 samples (ids are global sample indexes).
        bounds = np.cumsum([7, 7, 6, 7, 8, 8, 6, 6, 5])
        for rank, ids in zip(plan["ranks"], want, strict=True):
            shards = np.searchsorted(bounds, ids, side="right")
            assert rank["first_shards"] == list(dict.fromkeys(int(s) for s in shards))


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
