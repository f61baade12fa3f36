"""Every golden iteration case of mosaicml-streaming 0.13, through the public API, in fresh processes.

Ranks are simulated with RANK / WORLD_SIZE / LOCAL_WORLD_SIZE (one process per case and phase), workers
are real DataLoader worker processes, and each phase (main run, checkpoint capture, resume) runs in a
fresh process, as the golden data was produced.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from astreaming.order import hints

from . import stacks
from .remotes import Remote

GOLDEN = Path(__file__).parent.parent / "golden" / "iteration"
RUNNER = Path(__file__).parent / "golden_runner.py"
CASES: list[dict[str, Any]] = json.loads((GOLDEN / "cases.json").read_text())["cases"]


def run_phase(phase: str, case: dict[str, Any], remote: Remote, tmp_path: Path) -> dict[str, Any]:
    request = {"phase": phase, "case": case, "remotes": remote.roots, "local_base": str(tmp_path / "cache")}
    path = tmp_path / f"{phase}.json"
    path.write_text(json.dumps(request))
    env = {**os.environ, **remote.env}
    proc = stacks.start([sys.executable, str(RUNNER), str(path)], env=env)
    out, err = stacks.communicate(proc, timeout=240)
    assert proc.returncode == 0, err[-4000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def on_both_backends(cases: list[dict[str, Any]]) -> pytest.MarkDecorator:
    """Each case on GCS and on S3. The default run takes every other case on one of the two (alternating,
    so it still reads both backends); the rest runs in ``nox -s node`` (marked ``node``): the whole matrix,
    a fresh process per phase, took a third of the default run's time."""
    params = [
        pytest.param(
            case,
            backend,
            id=f"{case['name']}-{backend}",
            marks=[] if i % 2 == 0 and j == (i // 2) % 2 else [pytest.mark.node],
        )
        for i, case in enumerate(cases)
        for j, backend in enumerate(("gs", "s3"))
    ]
    return pytest.mark.parametrize(("case", "golden_remote"), params, indirect=["golden_remote"])


@on_both_backends(CASES)
def test_epochs_and_state_dict(case: dict[str, Any], golden_remote: Remote, tmp_path: Path) -> None:
    got = run_phase("main", case, golden_remote, tmp_path)
    expected = case["expected"]
    for epoch in (0, 1):
        assert got["epochs"][epoch] == expected["epochs"][epoch]["ranks"], f"epoch {epoch}"
    assert got["len"][0] == expected["len"]
    assert got["epoch_size"] == expected["epoch_size"]
    assert got["num_samples"] == expected["num_samples"]
    assert mosaic_keys(got["state_dict_after_epochs_0_1"]) == expected["state_dict_after_epochs_0_1"]


RESUME_CASES = [c for c in CASES if "resume" in c]


def mosaic_keys(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the one key astreaming adds (a mid-epoch checkpoint's shuffle draws, a string
    mosaic's loader ignores), which is checked to be the only addition."""
    extra = set(state) - {
        "epoch",
        "sample_in_epoch",
        "num_canonical_nodes",
        "shuffle_seed",
        "initial_physical_nodes",
    }
    assert extra <= {hints.KEY} and isinstance(state.get(hints.KEY, ""), str), extra
    return {k: v for k, v in state.items() if k != hints.KEY}


@on_both_backends(RESUME_CASES)
def test_stop_and_resume_in_a_fresh_process(
    case: dict[str, Any], golden_remote: Remote, tmp_path: Path
) -> None:
    resume = case["resume"]
    expected = resume["expected"]
    captured = run_phase("capture", case, golden_remote, tmp_path)
    assert mosaic_keys(captured["state_dict"]) == resume["state_dict"]
    got = run_phase("resume", case, golden_remote, tmp_path)
    if resume["mode"] == "stale":
        # mosaic silently ignores a checkpoint older than the dataset's epoch and starts epoch 1;
        # astreaming applies it (reference hazard 18): the rest of epoch 0 after the checkpoint.
        assert got["first_iter"] == expected["first_iter"]["ranks"]
        done = resume["capture"]["after_batches"]
        assert got["continuation"] == [r[done:] for r in expected["first_iter"]["ranks"]]
        return
    assert got["continuation"] == expected["continuation"]["ranks"]
    if "raises" in expected["next_epoch"]:
        # mosaic's forked workers forget initial_physical_nodes and fail the next epoch; astreaming
        # keeps it, so the next epoch is the one mosaic yields without workers (same order for any W).
        sibling = next(c for c in RESUME_CASES if c["name"] == case["name"].removesuffix("_w2"))
        assert got["errors"] == []
        assert got["next_epoch"] == sibling["resume"]["expected"]["next_epoch"]["ranks"]
        assert mosaic_keys(got["state_dict_at_end"]) == sibling["resume"]["expected"]["state_dict_at_end"]
    else:
        assert got["next_epoch"] == expected["next_epoch"]["ranks"]
        assert mosaic_keys(got["state_dict_at_end"]) == expected["state_dict_at_end"]
    assert got["len"][0] == expected["len"]
