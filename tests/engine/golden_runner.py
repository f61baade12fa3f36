"""Run one golden iteration case (all its simulated ranks) in a fresh process; print the ids as JSON.

Invoked by test_golden_iteration.py as ``python golden_runner.py <request.json>``. Ranks are simulated
as mosaic's golden generator did: RANK / WORLD_SIZE / LOCAL_WORLD_SIZE in the environment of the
process (and so of its forked DataLoader workers), one rank after another.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
from typing import Any

import torch

from astreaming import Stream, StreamingDataLoader, StreamingDataset


def build(
    request: dict[str, Any], case: dict[str, Any], world: dict[str, Any], kwargs: dict[str, Any], rank: int
) -> tuple[StreamingDataset, StreamingDataLoader]:
    node = rank // world["local_world_size"]
    local_base = os.path.join(request["local_base"], f"node{node}")
    remotes = request["remotes"]
    if case["stream_form"] == "remote/local":
        (spec,) = case["streams"]
        ds = StreamingDataset(
            remote=remotes[spec["dataset"]], local=os.path.join(local_base, spec["dataset"]), **kwargs
        )
    else:
        streams = [
            Stream(
                remote=remotes[s["dataset"]],
                local=os.path.join(local_base, s["dataset"]),
                **s.get("kwargs", {}),
            )
            for s in case["streams"]
        ]
        ds = StreamingDataset(streams=streams, **kwargs)
    loader = StreamingDataLoader(
        ds,
        batch_size=kwargs["batch_size"],
        num_workers=world["num_workers"],
        multiprocessing_context=request.get("mp_context"),
    )
    return ds, loader


def set_rank(world: dict[str, Any], rank: int) -> None:
    os.environ["RANK"] = str(rank)
    os.environ["LOCAL_RANK"] = str(rank % world["local_world_size"])
    os.environ["WORLD_SIZE"] = str(world["world_size"])
    os.environ["LOCAL_WORLD_SIZE"] = str(world["local_world_size"])


def epoch_ids(loader: StreamingDataLoader, stop_after: int | None = None) -> list[list[int]]:
    batches: list[list[int]] = []
    for batch in loader:
        ids = batch["id"]
        batches.append(ids.tolist() if isinstance(ids, torch.Tensor) else list(ids))
        if stop_after is not None and len(batches) == stop_after:
            break
    return batches


def run_main(request: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    world, kwargs = case["world"], case["dataset_kwargs"]
    out: dict[str, Any] = {"epochs": [[], []], "len": [], "epoch_size": None, "num_samples": None}
    for rank in range(world["world_size"]):
        set_rank(world, rank)
        ds, loader = build(request, case, world, kwargs, rank)
        for epoch in (0, 1):
            out["epochs"][epoch].append(epoch_ids(loader))
            if rank == 0 and epoch == 1:
                out["state_dict_after_epochs_0_1"] = loader.state_dict()
        out["len"].append(len(ds))
        out["epoch_size"], out["num_samples"] = ds.epoch_size, ds.num_samples
    return out


def run_resume(request: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    resume = case["resume"]
    world, kwargs = resume["world"], resume["dataset_kwargs"]
    out: dict[str, Any] = {"continuation": [], "next_epoch": [], "first_iter": [], "len": [], "errors": []}
    for rank in range(world["world_size"]):
        set_rank(world, rank)
        ds, loader = build(request, case, world, kwargs, rank)
        if resume["mode"] == "stale":
            out["first_iter"].append(epoch_ids(loader))
        loader.load_state_dict(resume["state_dict"])
        out["continuation"].append(epoch_ids(loader))
        try:
            out["next_epoch"].append(epoch_ids(loader))
        except Exception as exc:  # recorded, compared by the test
            out["errors"].append(f"{type(exc).__name__}: {exc}")
            out["next_epoch"].append(None)
        if rank == 0:
            out["state_dict_at_end"] = loader.state_dict()
        out["len"].append(len(ds))
    return out


def run_capture(request: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """Stop rank 0 after the captured number of batches and return its checkpoint."""
    world, kwargs = case["world"], case["dataset_kwargs"]
    capture = case["resume"]["capture"]
    set_rank(world, 0)
    _, loader = build(request, case, world, kwargs, 0)
    for _ in range(capture["epoch"]):
        epoch_ids(loader)
    epoch_ids(loader, stop_after=capture["after_batches"])
    return {"state_dict": loader.state_dict()}


def main() -> None:
    # On a test timeout, stacks of this job and its forked workers (tests/engine/stacks.py).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    with open(sys.argv[1], encoding="utf-8") as file:
        request = json.load(file)
    case = request["case"]
    phase = {"main": run_main, "resume": run_resume, "capture": run_capture}[request["phase"]]
    print(json.dumps(phase(request, case)))


if __name__ == "__main__":
    main()
