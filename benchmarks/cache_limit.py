"""``cache_limit``: bytes downloaded and throughput, astreaming vs mosaic, plus a multi-job soak.

A dataset of ``--samples`` large samples (~10 KB each, default 4k = ~40 MB in shards of ``--shard-mb``,
default 1.4 MB: 29 shards) is served over S3 (moto) behind the fault proxy (``serve_proxy.py``; 20 ms per
request, 50 MB/s shared). The proxy counts the bytes that crossed the link.

**Matrix.** For each ``cache_limit`` fraction of the dataset's bytes (``--fractions``, default 15%, 25%,
50%) and each DataLoader worker count (``--workers``, default 0 and 2), both libraries stream
``--epochs`` epochs (default 2) into an empty cache, each in a fresh process, through a torch
``DataLoader(batch_size=256, num_workers=W)`` (astreaming: ``StreamingDataLoader``), without shuffle
unless ``--shuffle``. Throughput is samples over the time from construction to the last sample.
mosaic refuses a ``cache_limit`` under 4x its largest shard: the default sizes keep 15% above that.

**Soak.** 2 jobs x 2 ranks x 2 workers, all on one ``local``, ``cache_limit`` = ``--soak-fraction``
(default 30%), ``--soak-epochs`` (default 3) from S3: the bytes the store served as a multiple of the
dataset's bytes (issue 8 target: at most 3x), and whether every sample came exactly once per epoch and
job. The jobs are two runs of one sweep (``--soak-orders same``: same shuffle seed, batch sizes 32 and
16) or a shuffled train job beside an unshuffled eval job (``different``); see :func:`soak_jobs`. Ranks
are processes with RANK / WORLD_SIZE / LOCAL_WORLD_SIZE set as torchrun sets them, and the ranks of a job
meet (a gloo barrier) before their first epoch as a torchrun job's do (``--soak-unsynced``: they don't;
on a loaded machine one rank then starts seconds, up to an epoch, after the others; ``--soak-together``:
every process of both jobs meets, so the two jobs also start together); the whole soak has
``--soak-timeout`` seconds. mosaic runs the same shape: what happens is recorded.

**Near-full limit.** ``--near-full-samples`` (default 900) ~10 KB samples in 5 shards, ``cache_limit`` = the
index plus 4 shards, the default shuffle (which mixes all five shards into every worker's order), a
``DataLoader(batch_size=16, num_workers=2)``, ``--near-full-epochs`` (default 1): the order needs the fifth
shard every few samples, so downloads are unavoidable; the question is how many (issue 8: two workers
taking turns evicting each other's next shard). ``--skip-near-full`` leaves it out.

Each failure (error, timeout, a lost or duplicated sample) is recorded in the results, not raised.
``--trace DIR`` logs astreaming's reservations and evictions (``_trace.py``).

    python benchmarks/cache_limit.py                       # 5-7 min on a loaded 2-core machine
    python benchmarks/cache_limit.py --fractions 0.25 --workers 0 --skip-soak
    python benchmarks/cache_limit.py --json benchmarks/results/cache_limit.json --markdown
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import serve_proxy

STATS_ENV = "ASTREAMING_BENCH_STATS"  # directory where every iterating process drops its counters
TRACE_ENV = "ASTREAMING_BENCH_TRACE"  # directory for _trace.py's reservation and eviction log
MEET_ENV = "ASTREAMING_BENCH_MEET"  # --soak-together: "rank,world" of the meeting of all the soak's processes


# -------------------------------------------------------------------------------- astreaming, one process


def _child(args: argparse.Namespace) -> None:
    """One astreaming process (a matrix run or one rank of a soak job); prints its JSON."""
    import importlib

    from astreaming import StreamingDataLoader, StreamingDataset

    class Measured(StreamingDataset):
        """Drops this process's counters into ``$ASTREAMING_BENCH_STATS`` after each of its epochs
        (DataLoader workers are processes of their own: ``ds.stats()`` in the parent sees none of it)."""

        def __iter__(self) -> Any:
            yield from super().__iter__()
            directory = os.environ.get(STATS_ENV)
            if directory:
                Path(directory, f"{os.getpid()}.json").write_text(json.dumps(_process_stats(self)))

    importlib.import_module("astreaming.storage.s3")  # before the clock: a cost of the process
    if os.environ.get(TRACE_ENV):
        import _trace

        _trace.install(os.environ[TRACE_ENV])
    private = args.local is None
    local = Path(tempfile.mkdtemp(prefix="astreaming-cache-")) / "data" if private else Path(args.local)
    result: dict[str, Any] = {"epochs": []}
    try:
        began = time.perf_counter()
        ds = Measured(
            remote=args.remote,
            local=str(local),
            batch_size=args.batch_size,
            shuffle=args.shuffle,
            shuffle_block_size=args.shuffle_block_size or None,
            cache_limit=args.cache_limit or None,
            predownload=args.predownload or None,
            **({} if args.shuffle_seed is None else {"shuffle_seed": args.shuffle_seed}),
        )
        result["init_s"] = time.perf_counter() - began
        loader = StreamingDataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
        if args.rendezvous:
            _meet_the_jobs_ranks()
        for _ in range(args.epochs):
            began = time.perf_counter()
            result["epochs"].append(_epoch(loader, args.ids))
            result["epochs"][-1]["seconds"] = time.perf_counter() - began
        del loader
        ds.close()
    except Exception as exc:  # recorded by the caller: a failing run is a result
        import traceback

        # Whole: a DataLoader worker's error carries the worker's original traceback in its message
        # ("Original Traceback (most recent call last): ..."), the only record of where it came from.
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    finally:
        if private:
            shutil.rmtree(local.parent, ignore_errors=True)
    print(json.dumps(result), flush=True)


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a job's rendezvous; the machine is shared)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _meet_the_jobs_ranks() -> None:
    """Wait for the job's other ranks before the first epoch (gloo on 127.0.0.1, from the env torchrun
    sets), as a torchrun job's ranks do in ``init_process_group``: without it each rank starts when its
    imports end, seconds apart on a loaded machine. Only the start is shared: no collective afterwards."""
    import torch.distributed as dist

    meet = os.environ.get(MEET_ENV)  # "rank,world" of a meeting of every process of the soak
    if meet:
        rank, world = (int(v) for v in meet.split(","))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    else:
        dist.init_process_group("gloo")
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _epoch(loader: Any, keep_ids: bool) -> dict[str, Any]:
    count = id_sum = 0
    ids: list[int] = []
    for batch in loader:
        count += len(batch["id"])
        id_sum += int(batch["id"].sum())
        if keep_ids:
            ids.extend(int(i) for i in batch["id"])
    out: dict[str, Any] = {"samples": count, "id_sum": id_sum}
    if keep_ids:
        out["ids"] = ids
    return out


def _process_stats(ds: Any) -> dict[str, Any]:
    """``ds.stats()`` plus the node budget's view from this process (evictions, deferrals)."""
    import dataclasses

    stats: dict[str, Any] = dict(ds.stats())
    sync = getattr(ds, "_sync", None)
    budget = getattr(getattr(sync, "runtime", None), "budget", None)
    if budget is not None:
        stats.update({f"budget_{k}": v for k, v in dataclasses.asdict(budget.statistics()).items()})
    return stats


def _sum_stats(directory: Path) -> dict[str, Any]:
    """Counters of every process that iterated (workers included), summed; ``processes`` counts them."""
    total: dict[str, Any] = {"processes": 0}
    for path in sorted(directory.glob("*.json")):
        total["processes"] += 1
        for key, value in json.loads(path.read_text()).items():
            if key in ("budget_limit", "budget_usage"):
                total[key] = max(total.get(key, 0), value)
            elif isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return total


def _command(lib: str, remote: str, opts: dict[str, Any]) -> list[str]:
    """The command line of one process of ``lib``: this script's child mode, or the peer script."""
    if lib == "astreaming":
        cmd = [sys.executable, __file__, "--child", "--remote", remote]
    else:
        cmd = [str(_common.peer_python()), str(_common.PEERS_DIR / "mosaic_cache.py"), "--remote", remote]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not None and value is not False:  # 0 is a value (0 workers), False a flag unset
            cmd += [flag, str(value)]
    return cmd


def _lib_env(lib: str, tmp: str, stats_dir: str, trace: str | None = None) -> dict[str, str]:
    """Environment of one process of ``lib``. astreaming: where to drop its counters. mosaic: the
    torchvision stand-in on PYTHONPATH (spawned workers too) and a private TMPDIR (mosaic leaves lock
    files there), which the processes of one node must share."""
    if lib == "astreaming":
        if trace:
            Path(trace).mkdir(parents=True, exist_ok=True)
            return {STATS_ENV: stats_dir, TRACE_ENV: trace}
        return {STATS_ENV: stats_dir}
    path = os.pathsep.join((str(_common.STUBS_DIR), str(_common.BENCH_DIR)))
    return {"PYTHONPATH": path, "TMPDIR": tmp}


# ------------------------------------------------------------------------------------------- processes


def _run_procs(
    cmds: list[tuple[list[str], dict[str, str]]], timeout: float
) -> tuple[list[dict[str, Any]], bool]:
    """Start every command at once; wait up to ``timeout`` s in all. Returns each one's last JSON line
    (or ``{"error": ...}``) and whether the time ran out (then all are killed, with their children)."""
    procs = []
    for cmd, env in cmds:
        procs.append(
            subprocess.Popen(
                cmd,
                env=dict(os.environ, **env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group: a timeout kills its workers too
            )
        )
    deadline = time.monotonic() + timeout
    timed_out = False
    outputs: list[tuple[str, str]] = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            timed_out = True
            break
    if timed_out:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        outputs = [proc.communicate() for proc in procs]
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        line = next((x for x in reversed(out.splitlines()) if x.startswith("{")), None)
        if line is not None:
            results.append(json.loads(line))
        else:
            what = "timed out" if timed_out else f"exited {proc.returncode}"
            results.append({"epochs": [], "error": f"{what}: {err.strip()}"})  # whole: see _child
    return results, timed_out


class _MosaicShm:
    """Unlinks mosaic's ``/dev/shm`` segments created while the block ran and left behind."""

    def __enter__(self) -> _MosaicShm:
        self.before = _common._mosaic_segments()
        self.leaked: list[str] = []
        return self

    def __exit__(self, *exc: object) -> None:
        self.leaked = sorted(_common._mosaic_segments() - self.before)
        for name in self.leaked:
            (Path("/dev/shm") / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- matrix


def _check(result: dict[str, Any], samples: int, epochs: int) -> str | None:
    """Why a single-process run is not a success (None if it is)."""
    if result.get("error"):
        return str(result["error"]).splitlines()[0][:300]
    if len(result["epochs"]) != epochs:
        return f"{len(result['epochs'])} of {epochs} epochs"
    for i, e in enumerate(result["epochs"]):
        if e["samples"] != samples or e["id_sum"] != samples * (samples - 1) // 2:
            return f"epoch {i}: {e['samples']} samples (want {samples}) or a wrong id sum"
    return None


def run_matrix(
    served: serve_proxy.Served, lib: str, info: dict[str, Any], fraction: float, workers: int, args: Any
) -> dict[str, Any]:
    """One library, one cache_limit, one worker count: a fresh process into an empty cache."""
    n = info["samples"]
    limit = int(info["bytes"] * fraction)
    opts = {
        "batch_size": 256,
        "workers": workers,
        "cache_limit": limit,
        "epochs": args.epochs,
        "shuffle": args.shuffle,
        "shuffle_block_size": args.shuffle_block_size,
        "predownload": args.predownload or None,
    }
    with tempfile.TemporaryDirectory(prefix="bench-cl-") as tmp:
        trace = args.trace and os.path.join(args.trace, f"{fraction}-w{workers}")
        env = dict(served.env, **_lib_env(lib, tmp, tmp, trace))
        cmd = _command(lib, served.root, opts)
        before = served.stats()
        began = time.perf_counter()
        with _MosaicShm() as shm:
            (result,), _ = _run_procs([(cmd, env)], args.timeout)
        wall = time.perf_counter() - began
        after = served.stats()
        counters = _sum_stats(Path(tmp)) if lib == "astreaming" else {}
    link = after["bytes_sent"] - before["bytes_sent"]
    failure = _check(result, n, args.epochs)
    seconds = result.get("init_s", 0.0) + sum(e["seconds"] for e in result["epochs"])
    row: dict[str, Any] = {
        "lib": lib,
        "fraction": fraction,
        "cache_limit": limit,
        "workers": workers,
        "ok": failure is None,
        "failure": failure,
        "traceback": result.get("traceback"),
        "link_bytes": link,
        "x_dataset": link / info["bytes"],
        "requests": after["requests"] - before["requests"],
        "seconds": seconds,
        "process_wall_s": wall,
        "samples_per_s": n * args.epochs / seconds if failure is None and seconds else None,
        "init_s": result.get("init_s"),
        "epoch_s": [e["seconds"] for e in result["epochs"]],
        "counters": counters,
        "leaked_shm": shm.leaked,
    }
    return row


# ------------------------------------------------------------------------------------------------ soak


def _status(result: dict[str, Any], epochs: int) -> str:
    """One soak process: ``finished``, ``killed at the timeout after N epochs`` or its error."""
    error = str(result.get("error") or "")
    if error.startswith("timed out"):
        return f"killed at the timeout after {len(result['epochs'])} epochs"
    if error:
        return error.splitlines()[0][:200]
    return "finished" if len(result["epochs"]) == epochs else f"{len(result['epochs'])} epochs"


def soak_jobs(orders: str) -> dict[str, dict[str, Any]]:
    """The two jobs of the soak. ``same``: two runs of one sweep (same shuffle seed, other batch sizes),
    which read the shards in about the same order, so one download can serve both. ``different``: a
    shuffled train job next to an unshuffled eval job: each job needs the whole dataset once per epoch
    on its own, so about 2x the dataset per epoch is the floor at a tight limit."""
    train = {"shuffle": True, "batch_size": 32, "shuffle_seed": 17}
    if orders == "same":
        return {"train-a": train, "train-b": {**train, "batch_size": 16}}
    return {"train": train, "eval": {"shuffle": False, "batch_size": 16}}


def run_soak(served: serve_proxy.Served, lib: str, info: dict[str, Any], args: Any) -> dict[str, Any]:
    """2 jobs x ``--soak-ranks`` ranks x ``--soak-workers`` workers on one ``local``; all at once."""
    n = info["samples"]
    limit = int(info["bytes"] * args.soak_fraction)
    ranks = args.soak_ranks
    # Two shards' worth of samples by default: the working set of a block shuffle stays small
    # (mosaic's sizing rule for py1e: cache >= shard bytes x block / samples per shard).
    block = args.soak_shuffle_block_size or 2 * -(-n // info["shards"])
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        local = Path(tmp) / "cache"
        stats_dir = Path(tmp) / "stats"
        stats_dir.mkdir()
        cmds: list[tuple[list[str], dict[str, str]]] = []
        keys = []
        jobs = dict(list(soak_jobs(args.soak_orders).items())[: args.soak_jobs])
        together = lib == "astreaming" and args.soak_together
        shared_port = _free_port()
        ports = {job: shared_port if together else _free_port() for job in jobs}
        for job, shape in jobs.items():
            opts = {
                "local": local,
                "workers": args.soak_workers,
                "cache_limit": limit,
                "epochs": args.soak_epochs,
                "ids": True,
                "shuffle_block_size": block if shape["shuffle"] else None,
                # mosaic's ranks of a job wait for each other in its constructor; astreaming has no
                # barrier of its own, so its ranks meet as a torchrun job's do (see _meet_the_jobs_ranks).
                "rendezvous": together or (lib == "astreaming" and ranks > 1 and not args.soak_unsynced),
                **shape,
            }
            for rank in range(ranks):
                env = dict(served.env, RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_WORLD_SIZE=str(ranks))
                env["ASTREAMING_BENCH_LABEL"] = f"{job}-r{rank}"
                env.update(
                    _lib_env(lib, tmp, str(stats_dir), args.trace and os.path.join(args.trace, "soak"))
                )
                cmd = _command(lib, served.root, opts)
                # Two jobs are two torchrun launches: each has its own rendezvous port.
                env["MASTER_ADDR"], env["MASTER_PORT"] = "127.0.0.1", str(ports[job])
                if together:  # every process of both jobs meets once: the jobs start their epochs together
                    env[MEET_ENV] = f"{len(keys)},{len(jobs) * ranks}"
                cmds.append((cmd, env))
                keys.append((job, rank))
        before = served.stats()
        began = time.perf_counter()
        with _MosaicShm() as shm:
            results, timed_out = _run_procs(cmds, args.soak_timeout)
        wall = time.perf_counter() - began
        after = served.stats()
        counters = _sum_stats(stats_dir) if lib == "astreaming" else {}
    link = after["bytes_sent"] - before["bytes_sent"]
    errors = sorted({str(r["error"]).splitlines()[0][:300] for r in results if r.get("error")})
    statuses = [_status(r, args.soak_epochs) for r in results]
    problems = []
    for job in jobs:
        for epoch in range(args.soak_epochs):
            ids = []
            for (j, _), r in zip(keys, results, strict=True):
                if j == job and len(r["epochs"]) > epoch:
                    ids.extend(r["epochs"][epoch]["ids"])
            if sorted(ids) != list(range(n)):
                problems.append(f"{job} epoch {epoch}: {len(ids)} ids, {len(set(ids))} distinct (want {n})")
    return {
        "lib": lib,
        "shape": f"{args.soak_jobs} jobs x {ranks} ranks x {args.soak_workers} workers",
        "jobs": jobs,
        "orders": args.soak_orders,
        "ranks_meet_before_epoch_0": lib == "astreaming" and ranks > 1 and not args.soak_unsynced,
        "jobs_start_together": lib == "astreaming" and args.soak_together,
        "shuffle_block_size": block,
        "cache_limit": limit,
        "fraction": args.soak_fraction,
        "epochs": args.soak_epochs,
        "ok": not errors and not problems and not timed_out,
        "timed_out": timed_out,
        "errors": errors,
        "problems": problems[:6],
        "tracebacks": [r["traceback"] for r in results if r.get("traceback")],
        # A failed process's whole error (its first line is its status), with any worker's traceback.
        "processes": [
            {"job": j, "rank": k, "status": st, **({"error": r["error"]} if r.get("error") else {})}
            for (j, k), st, r in zip(keys, statuses, results, strict=True)
        ],
        "link_bytes": link,
        "x_dataset": link / info["bytes"],
        "requests": after["requests"] - before["requests"],
        "wall_s": wall,
        "counters": counters,
        "leaked_shm": shm.leaked,
    }


# ------------------------------------------------------------------------------------ near-full limit


def run_near_full(
    served: serve_proxy.Served, lib: str, info: dict[str, Any], data: Path, args: Any
) -> dict[str, Any]:
    """Five shards, room for four, the default shuffle, 2 workers: shards downloaded per epoch."""
    shard_bytes = max(p.stat().st_size for p in data.glob("shard.*"))
    limit = (data / "index.json").stat().st_size + 4 * shard_bytes
    opts = {
        "batch_size": 16,
        "workers": 2,
        "cache_limit": limit,
        "epochs": args.near_full_epochs,
        "shuffle": True,
    }
    with tempfile.TemporaryDirectory(prefix="bench-nf-") as tmp:
        env = dict(served.env, **_lib_env(lib, tmp, tmp))
        before = served.stats()
        began = time.perf_counter()
        with _MosaicShm():
            (result,), _ = _run_procs([(_command(lib, served.root, opts), env)], args.timeout)
        wall = time.perf_counter() - began
        after = served.stats()
        counters = _sum_stats(Path(tmp)) if lib == "astreaming" else {}
    link = after["bytes_sent"] - before["bytes_sent"]
    failure = _check(result, info["samples"], args.near_full_epochs)
    return {
        "lib": lib,
        "shards": info["shards"],
        "epochs": args.near_full_epochs,
        "shard_bytes": shard_bytes,
        "cache_limit": limit,
        "ok": failure is None,
        "failure": failure,
        "link_bytes": link,
        "x_dataset": link / info["bytes"],
        # Shards over the link, from the bytes (both libraries download whole shards).
        "shards_per_epoch": link / shard_bytes / args.near_full_epochs,
        "wall_s": wall,
        "counters": counters,
    }


def near_full_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": r["lib"],
            "shards downloaded / epoch": round(r["shards_per_epoch"], 1)
            if r["ok"]
            else f"FAILED: {r['failure']}",
            "x dataset / epoch": round(r["x_dataset"] / r["epochs"], 2),
            "wall s": round(r["wall_s"], 1),
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------------------------- output


def matrix_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (fraction, workers): both libraries' bytes and rates, ratios astreaming / mosaic."""
    lines = []
    for key in dict.fromkeys((r["fraction"], r["workers"]) for r in rows):
        pair = {r["lib"]: r for r in rows if (r["fraction"], r["workers"]) == key}
        ours, theirs = pair.get("astreaming"), pair.get("mosaic")
        line: dict[str, Any] = {"name": f"{key[0]:.0%}, {key[1]} workers"}
        for lib, r in (("astreaming", ours), ("mosaic", theirs)):
            if r is None:
                continue
            line[f"{lib} MB"] = _mb(r) if r["ok"] else f"FAILED ({_mb(r)} MB)"
            line[f"{lib} samples/s"] = round(r["samples_per_s"]) if r["ok"] else None
        if ours and theirs and ours["ok"] and theirs["ok"]:
            line["bytes astreaming/mosaic"] = f"{ours['link_bytes'] / theirs['link_bytes']:.2f}x"
            line["speed astreaming/mosaic"] = f"{ours['samples_per_s'] / theirs['samples_per_s']:.2f}x"
        lines.append(line)
    return lines


def _mb(row: dict[str, Any]) -> str:
    return f"{row['link_bytes'] / 1e6:.1f} ({row['x_dataset']:.2f}x)"


def soak_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": r["lib"] if r.get("run", 0) == 0 else f"{r['lib']} #{r['run']}",
            "served MB": round(r["link_bytes"] / 1e6, 1),
            "x dataset": round(r["x_dataset"], 2),
            "<= 3x": ("yes" if r["x_dataset"] <= 3 else "NO") if r["ok"] else "n/a (failed)",
            "wall s": round(r["wall_s"], 1),
            "outcome": "ok: every sample once per epoch and job" if r["ok"] else _soak_failure(r),
        }
        for r in rows
    ]


def _soak_failure(row: dict[str, Any]) -> str:
    counts = collections.Counter(p["status"] for p in row["processes"])
    return "; ".join(f"{n} of {len(row['processes'])} processes: {status}" for status, n in counts.items())


def markdown(lines: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for line in lines for k in line))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for line in lines:
        out.append("| " + " | ".join(_common._fmt(line.get(c)) for c in cols) + " |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--samples", type=_common.count, default=4_000, help="~10 KB samples")
    p.add_argument("--shard-mb", type=float, default=1.4)
    p.add_argument(
        "--fractions", default="0.15,0.25,0.5", help="cache_limit / dataset bytes, comma-separated"
    )
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts, comma-separated")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--shuffle", action="store_true", help="shuffle the matrix runs (default: no shuffle)")
    p.add_argument("--shuffle-block-size", type=int, default=0, help="0 = the libraries' default")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per matrix run")
    p.add_argument("--predownload", type=int, default=0, help="matrix runs, both libraries (0: 8 x batch)")
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--bandwidth", type=float, default=50e6, help="bytes/s")
    p.add_argument("--libs", default="astreaming,mosaic")
    p.add_argument("--skip-matrix", action="store_true")
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--soak-fraction", type=float, default=0.30)
    p.add_argument("--soak-epochs", type=int, default=3)
    p.add_argument("--soak-jobs", type=int, choices=[1, 2], default=2)
    p.add_argument("--soak-ranks", type=int, default=2)
    p.add_argument("--soak-workers", type=int, default=2)
    p.add_argument("--soak-shuffle-block-size", type=int, default=0, help="0 = two shards' samples")
    p.add_argument("--soak-orders", choices=["same", "different"], default="same", help="see soak_jobs")
    p.add_argument(
        "--soak-unsynced",
        action="store_true",
        help="astreaming's ranks start their first epoch as soon as each is up, instead of meeting the "
        "job's other ranks first (as torchrun ranks do)",
    )
    p.add_argument(
        "--soak-together",
        action="store_true",
        help="every process of both jobs meets before the first epoch: the jobs start together (on this "
        "loaded machine their imports alone end up to an epoch of this small dataset apart)",
    )
    p.add_argument("--soak-timeout", type=float, default=150.0)
    p.add_argument("--soak-runs", type=int, default=1, help="run the soak this many times (rare failures)")
    p.add_argument("--skip-near-full", action="store_true")
    p.add_argument("--near-full-samples", type=int, default=900, help="~10 KB samples in 5 shards")
    p.add_argument("--near-full-epochs", type=int, default=1)
    p.add_argument("--data-dir", help="keep and reuse the dataset here (default: a temporary directory)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    p.add_argument("--trace", help="log astreaming's reservations and evictions here (see _trace.py)")
    # The child mode: one astreaming process (used by the runs above).
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remote", help=argparse.SUPPRESS)
    p.add_argument("--local", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--cache-limit", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--ids", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shuffle-seed", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--rendezvous", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the matrix and the soak for both libraries, print the tables; return the figures."""
    args = _parser().parse_args(argv)
    if args.child:
        args.workers = int(args.workers)
        _child(args)
        return {}
    libs = [x for x in args.libs.split(",") if x]
    fractions = [float(x) for x in args.fractions.split(",") if x]
    worker_counts = [int(x) for x in args.workers.split(",") if x]
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-cache-"))
    n = args.samples
    shard_limit = int(args.shard_mb * 1e6)
    matrix: list[dict[str, Any]] = []
    soak: list[dict[str, Any]] = []
    near_full: list[dict[str, Any]] = []
    began = time.perf_counter()
    try:
        data = root / f"large-{n}-{shard_limit}"
        info = _common.ensure_dataset(data, n, "large", size_limit=shard_limit)
        print(
            f"dataset: {n:,} ~10 KB samples, {info['shards']} shards, {info['bytes']:,} B; "
            f"S3 (moto) via proxy {args.latency * 1e3:.0f} ms, {args.bandwidth / 1e6:.0f} MB/s; "
            f"{args.epochs} epochs, shuffle={args.shuffle}",
            flush=True,
        )
        with serve_proxy.serve(data, "s3", args.latency, args.bandwidth) as served:
            for fraction in [] if args.skip_matrix else fractions:
                for workers in worker_counts:
                    for lib in libs:
                        row = run_matrix(served, lib, info, fraction, workers, args)
                        matrix.append(row)
                        print(
                            f"  {lib:10} {fraction:.0%} w{workers}: {row['link_bytes'] / 1e6:.1f} MB, "
                            f"{row['samples_per_s'] or 0:,.0f} samples/s"
                            + ("" if row["ok"] else f"  FAILED: {row['failure']}"),
                            flush=True,
                        )
            for run in range(0 if args.skip_soak else args.soak_runs):
                for lib in libs:
                    row = run_soak(served, lib, info, args)
                    row["run"] = run
                    soak.append(row)
                    print(f"  soak {lib} #{run}: {row['x_dataset']:.2f}x dataset, ok={row['ok']}", flush=True)
        if not args.skip_near_full:
            nf = args.near_full_samples
            # Five shards: a size limit of a fifth of the samples' bytes, plus a little for the headers.
            nf_data = root / f"near-full-{nf}"
            nf_info = _common.ensure_dataset(
                nf_data, nf, "large", size_limit=int(info["bytes"] / n * nf / 5 * 1.01)
            )
            with serve_proxy.serve(nf_data, "s3", args.latency, args.bandwidth) as nf_served:
                for lib in libs:
                    row = run_near_full(nf_served, lib, nf_info, nf_data, args)
                    near_full.append(row)
                    print(
                        f"  near-full {lib}: {row['shards_per_epoch']:.1f} shards / epoch "
                        f"of {nf_info['shards']}, ok={row['ok']}",
                        flush=True,
                    )
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)

    result = {
        "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dataset": info,
        "link": {"latency_s": args.latency, "bandwidth": args.bandwidth, "store": "moto S3"},
        "epochs": args.epochs,
        "shuffle": args.shuffle,
        "matrix": matrix,
        "soak": soak,
        "near_full": near_full,
        "total_s": time.perf_counter() - began,
    }
    if matrix:
        print(f"\ncache_limit, {args.epochs} epochs, MB over the link (x dataset); samples/s include init")
        _common.print_table(matrix_table(matrix))
    if soak:
        print(
            f"\nsoak: {soak[0]['shape']}, one local, cache_limit {args.soak_fraction:.0%}, "
            f"{args.soak_epochs} epochs"
        )
        _common.print_table(soak_table(soak))
    if near_full:
        print("\nnear-full limit: 5 shards, room for 4, default shuffle, 2 workers")
        _common.print_table(near_full_table(near_full))
    if args.markdown:
        print()
        if near_full:
            print(markdown(near_full_table(near_full)) + "\n")
        if matrix:
            print(markdown(matrix_table(matrix)) + "\n")
        if soak:
            print(markdown(soak_table(soak)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
