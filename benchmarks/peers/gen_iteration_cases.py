"""Generate golden iteration cases of several mixed streams with mosaicml-streaming 0.13 itself (peer venv).

Runs mosaic's ``StreamingDataset(streams=[Stream(...)])`` and ``StreamingDataLoader`` over the golden
datasets A, B, C (``tests/golden/iteration/datasets``) in real rank processes: one process per rank, all
at once, joined by ``torch.distributed`` (gloo on 127.0.0.1) when there are several, each with its own
DataLoader workers (fork). It records what ``tests/engine/golden_runner.py`` compares: the ids of two
epochs per rank, ``len``, ``epoch_size``, ``num_samples``, rank 0's ``state_dict()`` after them, and for
a case with ``resume``, rank 0's checkpoint after ``capture`` and what every rank yields after loading
it in fresh processes. Cases of the same name in ``cases.json`` are replaced, new ones appended::

    /work/peer-venv/bin/python benchmarks/peers/gen_iteration_cases.py tests/golden/iteration/cases.json

The cases are the ``CASES`` below: multi-stream mixes not covered by the older cases (weights by
``choose``/``repeat`` with shuffling, ``sampling_method="fixed"``, ``stratified`` with workers,
``per_stream`` with weights on two ranks, ``device_per_stream`` with ``repeat``, and resumption). Their
streams are a prefix of A, B, C in that order, as the plan tests in ``tests/order`` assume.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "tests" / "golden" / "iteration" / "datasets"


def _world(ranks: int, workers: int) -> dict[str, int]:
    return {"world_size": ranks, "local_world_size": ranks, "num_nodes": 1, "num_workers": workers}


def _streams(*specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"dataset": name, "kwargs": kwargs} if kwargs else {"dataset": name} for name, kwargs in specs]


def _case(
    name: str,
    streams: list[dict[str, Any]],
    kwargs: dict[str, Any],
    world: dict[str, int],
    capture: tuple[int, int] | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": name,
        "streams": streams,
        "stream_form": "streams=[Stream(...)]",
        "dataset_kwargs": kwargs,
        "world": world,
        "loader": {
            "class": "StreamingDataLoader",
            "batch_size": kwargs["batch_size"],
            "num_workers": world["num_workers"],
        },
    }
    if capture is not None:
        case["resume"] = {
            "capture": {
                "epoch": capture[0],
                "after_batches": capture[1],
                "on": "rank 0 StreamingDataLoader.state_dict()",
            },
            "world": world,
            "dataset_kwargs": kwargs,
            "mode": "fresh_process",
            "steps": ["load_state_dict(state_dict)", "iter (rest of the epoch)", "iter (next epoch)"],
        }
    return case


CASES = [
    _case(
        "ABC_choose_repeat_py1e_r2_w2",
        _streams(("A", {"choose": 30}), ("B", {"repeat": 2}), ("C", {})),
        {"shuffle": True, "num_canonical_nodes": 2, "shuffle_block_size": 16, "batch_size": 4},
        _world(2, 2),
        capture=(0, 4),
    ),
    _case(
        "ABC_fixed_proportion_py1s_w2",
        _streams(("A", {"proportion": 0.2}), ("B", {"proportion": 0.5}), ("C", {"proportion": 0.3})),
        {
            "shuffle": True,
            "shuffle_algo": "py1s",
            "sampling_method": "fixed",
            "epoch_size": 70,
            "num_canonical_nodes": 1,
            "shuffle_block_size": 10,
            "batch_size": 5,
        },
        _world(1, 2),
    ),
    _case(
        "ABC_stratified_repeat_w2",
        _streams(("A", {"repeat": 0.5}), ("B", {"repeat": 1.5}), ("C", {"choose": 20})),
        {"shuffle": True, "batching_method": "stratified", "num_canonical_nodes": 1, "batch_size": 6},
        _world(1, 2),
        capture=(1, 3),
    ),
    _case(
        "ABC_per_stream_proportion_r2",
        _streams(("A", {"proportion": 0.4}), ("B", {"proportion": 0.4}), ("C", {"proportion": 0.2})),
        {
            "shuffle": True,
            "batching_method": "per_stream",
            "epoch_size": 90,
            "num_canonical_nodes": 2,
            "shuffle_block_size": 12,
            "batch_size": 3,
        },
        _world(2, 0),
        capture=(0, 5),
    ),
    _case(
        "AB_device_per_stream_repeat_r2_w2",
        _streams(("A", {"repeat": 0.5}), ("B", {"repeat": 3})),
        {
            "shuffle": True,
            "batching_method": "device_per_stream",
            "num_canonical_nodes": 2,
            "shuffle_block_size": 8,
            "batch_size": 2,
        },
        _world(2, 2),
    ),
    _case(
        "AB_noshuffle_choose_r2_w2",
        _streams(("A", {"choose": 45}), ("B", {"choose": 35})),
        {"num_canonical_nodes": 2, "batch_size": 4},
        _world(2, 2),
        capture=(0, 3),
    ),
]


# -- one rank (a child process) -------------------------------------------------------------------


def _epoch(loader: Any, stop_after: int | None = None) -> list[list[int]]:
    batches: list[list[int]] = []
    for batch in loader:
        batches.append([int(x) for x in batch["id"]])
        if stop_after is not None and len(batches) == stop_after:
            break
    return batches


def rank_job(request: dict[str, Any]) -> dict[str, Any]:
    import _peer  # noqa: F401  (the torchvision stand-in first on sys.path)
    import torch.distributed as dist
    from streaming import Stream, StreamingDataLoader, StreamingDataset

    case, phase = request["case"], request["phase"]
    world = case["world"]
    rank = int(os.environ["RANK"])
    if world["world_size"] > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world["world_size"])
    kwargs = case["dataset_kwargs"] if phase != "resume" else case["resume"]["dataset_kwargs"]
    node = rank // world["local_world_size"]
    streams = [
        Stream(
            remote=str(DATASETS / s["dataset"]),
            local=os.path.join(request["local_base"], f"node{node}", s["dataset"]),
            **s.get("kwargs", {}),
        )
        for s in case["streams"]
    ]
    ds = StreamingDataset(streams=streams, **kwargs)
    loader = StreamingDataLoader(ds, batch_size=kwargs["batch_size"], num_workers=world["num_workers"])
    out: dict[str, Any] = {"rank": rank}
    if phase == "main":
        out["epochs"] = [_epoch(loader), _epoch(loader)]
        out["state_dict"] = loader.state_dict()
    elif phase == "capture":
        capture = case["resume"]["capture"]
        for _ in range(capture["epoch"]):
            _epoch(loader)
        _epoch(loader, stop_after=capture["after_batches"])
        out["state_dict"] = loader.state_dict()
    else:
        loader.load_state_dict(request["state_dict"])
        out["continuation"] = _epoch(loader)
        out["next_epoch"] = _epoch(loader)
        out["state_dict"] = loader.state_dict()
    out["len"], out["epoch_size"], out["num_samples"] = len(ds), int(ds.epoch_size), int(ds.num_samples)
    if world["world_size"] > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


# -- the driver -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(
    case: dict[str, Any], phase: str, work: Path, state: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Run every rank of ``case`` for ``phase`` at once; their results in rank order."""
    world = case["world"]
    request = {"case": case, "phase": phase, "local_base": str(work / "cache"), "state_dict": state}
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{phase}.json"
    path.write_text(json.dumps(request))
    port = str(_free_port())
    procs = []
    for rank in range(world["world_size"]):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank % world["local_world_size"]),
            "WORLD_SIZE": str(world["world_size"]),
            "LOCAL_WORLD_SIZE": str(world["local_world_size"]),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        cmd = [sys.executable, __file__, "--rank-job", str(path)]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{case['name']} {phase}: rank failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def generate(case: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gen-iteration-") as tmp:
        main = run_ranks(case, "main", Path(tmp) / "main")
        case["expected"] = {
            "len": main[0]["len"],
            "epoch_size": main[0]["epoch_size"],
            "num_samples": main[0]["num_samples"],
            "epochs": [{"epoch": e, "ranks": [r["epochs"][e] for r in main]} for e in (0, 1)],
            "state_dict_after_epochs_0_1": main[0]["state_dict"],
        }
        if "resume" in case:
            resume = case["resume"]
            captured = run_ranks(case, "capture", Path(tmp) / "capture")
            resume["state_dict"] = captured[0]["state_dict"]
            got = run_ranks(case, "resume", Path(tmp) / "resume", resume["state_dict"])
            epoch = resume["state_dict"]["epoch"]
            resume["expected"] = {
                "continuation": {"epoch": epoch, "ranks": [r["continuation"] for r in got]},
                "next_epoch": {"epoch": epoch + 1, "ranks": [r["next_epoch"] for r in got]},
                "len": got[0]["len"],
                "state_dict_at_end": got[0]["state_dict"],
            }
    return case


def main() -> None:
    if sys.argv[1] == "--rank-job":
        with open(sys.argv[2], encoding="utf-8") as f:
            print(json.dumps(rank_job(json.load(f))), flush=True)
        return
    target = Path(sys.argv[1])
    golden = json.loads(target.read_text())
    names = [c["name"] for c in golden["cases"]]
    only = set(sys.argv[2:])
    for case in CASES:
        if only and case["name"] not in only:
            continue
        made = generate(json.loads(json.dumps(case)))
        print(
            f"{made['name']}: len {made['expected']['len']}, epoch_size {made['expected']['epoch_size']}",
            file=sys.stderr,
        )
        if made["name"] in names:
            golden["cases"][names.index(made["name"])] = made
        else:
            golden["cases"].append(made)
            names.append(made["name"])
    # One case per line, as the file has always been laid out.
    lines = ",\n  ".join(json.dumps(c, separators=(",", ":")) for c in golden["cases"])
    target.write_text('{"meta": ' + json.dumps(golden["meta"]) + ',\n "cases": [\n  ' + lines + "\n]}\n")


if __name__ == "__main__":
    main()
