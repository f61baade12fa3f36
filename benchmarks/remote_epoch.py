"""Cold remote epochs through a slow link: time to first sample and epoch time against the floor.

A dataset of ``--samples`` large samples (~10 KB each, default 20k = ~200 MB) in shards of
``--shard-mb`` MB (default 3, ~67 shards) is served from a separate process (``serve_proxy.py``) behind
the fault proxy: ``--latency`` seconds per request (default 20 ms) and ``--bandwidth`` bytes/s shared by
all connections (default 50 MB/s). Each run starts from an empty cache in a fresh process and iterates
one epoch in a plain loop (batch_size 256), from construction (which downloads the index) to the last
sample:

- astreaming over HTTP (aiohttp static server), S3 (moto) and GCS (fake-gcs-server, the real Go server),
  ``StreamingDataset(remote=...)`` (``--stores`` picks which);
- mosaicml-streaming 0.13.0 over the same S3 (its boto3 honours ``S3_ENDPOINT_URL``; it cannot read
  http(s) remotes).

Client libraries are imported before the clock starts (a one-time cost of a process, not of the link).

Floors (DESIGN §8): time to first sample ≤ 2 round trips + index transfer + first shard transfer;
cold epoch ≤ 1.15 x (bytes over the link ÷ bandwidth).

    python benchmarks/remote_epoch.py
    python benchmarks/remote_epoch.py --samples 10k --repeat 2 --skip-mosaic
"""

from __future__ import annotations

import argparse
import importlib
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


def child(args: argparse.Namespace) -> None:
    """One astreaming run in this (fresh) process; prints its JSON like the peer scripts."""
    from astreaming import StreamingDataset

    # Import the backend's module before the clock starts: a one-time cost of the process, not of the
    # link (mosaic_remote.py likewise imports boto3 first).
    scheme = args.remote.split("://", 1)[0]
    importlib.import_module(f"astreaming.storage.{ {'s3': 's3', 'gs': 'gcs'}.get(scheme, 'http') }")
    if os.environ.get("ASTREAMING_BENCH_LINK_TRACE"):
        import _linktrace

        _linktrace.install(os.environ["ASTREAMING_BENCH_LINK_TRACE"])
    if os.environ.get("BENCH_WHOLE_SHARDS"):
        from astreaming.storage import ranged

        ranged.MIN_PART = ranged.MAX_PART = 1 << 50  # the baseline: every shard over one connection
    local = Path(tempfile.mkdtemp(prefix="astreaming-remote-")) / "data"
    result: dict[str, Any] = {}
    try:
        began = time.perf_counter()
        result["began_monotonic"] = time.monotonic()
        ds = StreamingDataset(
            remote=args.remote,
            local=str(local),
            batch_size=args.batch_size,
            shuffle=args.shuffle,
            cache_limit=args.cache_limit or None,
        )
        result["init_s"] = time.perf_counter() - began
        epochs = []
        for _ in range(args.epochs):
            count = id_sum = 0
            first = 0.0
            for sample in ds:
                if not count:
                    first = time.perf_counter() - began
                id_sum += sample["id"]
                count += 1
            epochs.append({"samples": count, "id_sum": id_sum, "first_sample_s": first})
            epochs[-1]["seconds"] = time.perf_counter() - began
            began = time.perf_counter()
        result["epochs"] = epochs
        result["stats"] = ds.stats()
        times = os.times()
        result["client_cpu_s"] = times.user + times.system  # the whole process, imports included
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)
    print(json.dumps(result), flush=True)


def run_astreaming(
    remote: str,
    env: dict[str, str],
    *,
    batch_size: int = 256,
    cache_limit: int = 0,
    epochs: int = 1,
    shuffle: bool = False,
) -> dict[str, Any]:
    """:func:`child` in a fresh process with ``env`` added; returns its JSON."""
    args = [sys.executable, __file__, "--child", "--remote", remote, "--batch-size", str(batch_size)]
    args += ["--cache-limit", str(cache_limit), "--epochs", str(epochs)] + (["--shuffle"] if shuffle else [])
    proc = subprocess.run(args, env=dict(os.environ, **env), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"astreaming run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def run_astreaming_whole(remote: str, env: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """:func:`run_astreaming` with byte-range splitting off: each shard over one connection."""
    return run_astreaming(remote, dict(env, BENCH_WHOLE_SHARDS="1"), **kwargs)


def run_mosaic(
    remote: str,
    env: dict[str, str],
    *,
    batch_size: int = 256,
    cache_limit: int = 0,
    epochs: int = 1,
    shuffle: bool = False,
) -> dict[str, Any]:
    """``peers/mosaic_remote.py`` in the peer venv with ``env`` added; returns its JSON."""
    args = ["--remote", remote, "--batch-size", str(batch_size), "--epochs", str(epochs)]
    args += ["--cache-limit", str(cache_limit)] + (["--shuffle"] if shuffle else [])
    return _common.run_peer("mosaic_remote.py", args, env=env)


def measured(
    served: serve_proxy.Served, run: Any, samples: int, env: dict[str, str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """One run with the proxy's byte and request counts for it; checks every sample arrived."""
    before = served.stats()
    load = os.getloadavg()[0]
    out: dict[str, Any] = run(served.root, served.env if env is None else env, **kwargs)
    after = served.stats()
    # CPU of the serving process (server and proxy), and of the proxy's thread alone.
    out["server_cpu_s"] = after["cpu_s"] - before["cpu_s"]
    out["proxy_cpu_s"] = after["proxy_cpu_s"] - before["proxy_cpu_s"]
    for epoch in out["epochs"]:
        if epoch["samples"] != samples or epoch["id_sum"] != samples * (samples - 1) // 2:
            raise RuntimeError(f"{run.__name__}: an epoch yielded {epoch['samples']} samples, not {samples}")
    out["link_bytes"] = after["bytes_sent"] - before["bytes_sent"]
    out["requests"] = after["requests"] - before["requests"]
    out["load"] = [load, os.getloadavg()[0]]  # 1-minute load average before and after (a shared machine)
    return out


def link_summary(trace: Path, out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`_linktrace.summary` of one run's trace, with times from the dataset's construction."""
    import _linktrace

    records = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    for record in records:
        record["t0"] -= out["began_monotonic"]
        record["t1"] -= out["began_monotonic"]
    need = args.bandwidth / args.connection_bandwidth if args.connection_bandwidth else None
    return _linktrace.summary(records, need)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every configuration and print the table; return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=_common.count, default=20_000, help="~10 KB samples")
    parser.add_argument("--shard-mb", type=float, default=3.0, help="shard size limit in MB")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=50e6, help="bytes/s")
    parser.add_argument(
        "--connection-bandwidth",
        type=float,
        default=None,
        help="bytes/s of each connection under --bandwidth (an object store's per-connection cap)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (best kept)")
    parser.add_argument(
        "--stores",
        nargs="+",
        choices=["http", "s3", "s3rver", "gs"],
        default=["http", "s3", "gs"],
        help="astreaming's",
    )
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument(
        "--whole-shards-too", action="store_true", help="also run astreaming with byte-range splitting off"
    )
    parser.add_argument("--data-dir", help="keep and reuse the dataset here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--trace", help="log every request of the astreaming runs into this directory and summarise it"
    )
    # The child mode: one astreaming run (used by run_astreaming).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--cache-limit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--shuffle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return {}

    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-remote-"))
    n = args.samples
    limit = int(args.shard_mb * 1e6)
    rows: list[dict[str, Any]] = []
    try:
        data = root / f"large-{n}-{limit}"
        info = _common.ensure_dataset(data, n, "large", size_limit=limit)
        index_bytes = (data / "index.json").stat().st_size
        shard0 = json.loads((data / "index.json").read_text())["shards"][0]["raw_data"]["bytes"]
        print(
            f"dataset: {info['samples']:,} large samples, {info['shards']} shards, {info['bytes']:,} B; "
            f"link: {args.latency * 1e3:.0f} ms per request, {args.bandwidth / 1e6:.0f} MB/s shared"
            + (
                f", {args.connection_bandwidth / 1e6:.0f} MB/s per connection"
                if args.connection_bandwidth
                else ""
            )
        )
        configs = []
        for store in args.stores:
            configs.append((f"astreaming {store}", store, run_astreaming))
            if args.whole_shards_too:
                configs.append((f"astreaming {store} whole shards", store, run_astreaming_whole))
        if not args.skip_mosaic:
            configs.append(("mosaic s3", "s3", run_mosaic))
        for name, kind, run in configs:
            with serve_proxy.serve(
                data, kind, args.latency, args.bandwidth, connection_bandwidth=args.connection_bandwidth
            ) as served:
                best: dict[str, Any] | None = None
                all_x: list[float] = []
                for attempt in range(args.repeat):
                    env = served.env
                    trace = None
                    if args.trace and run is not run_mosaic:
                        trace = Path(args.trace) / f"{name.replace(' ', '-')}-{attempt}.jsonl"
                        trace.parent.mkdir(parents=True, exist_ok=True)
                        trace.unlink(missing_ok=True)
                        env = dict(env, ASTREAMING_BENCH_LINK_TRACE=str(trace))
                    out = measured(served, run, n, env=env)
                    if trace is not None:
                        out["trace"] = link_summary(trace, out, args)
                    all_x.append(round(out["epochs"][0]["seconds"] * args.bandwidth / out["link_bytes"], 3))
                    if best is None or out["epochs"][0]["seconds"] < best["epochs"][0]["seconds"]:
                        best = out
            assert best is not None
            epoch = best["epochs"][0]
            floor = best["link_bytes"] / args.bandwidth
            ttfs_floor = 2 * args.latency + (index_bytes + shard0) / args.bandwidth
            rows.append(
                {
                    "name": name,
                    "init_s": best["init_s"],
                    "first_sample_s": epoch["first_sample_s"],
                    "ttfs_target_s": ttfs_floor,
                    "epoch_s": epoch["seconds"],
                    "floor_s": floor,
                    "x floor": epoch["seconds"] / floor,
                    "link_MB": best["link_bytes"] / 1e6,
                    "requests": best["requests"],
                    "MB/s": best["link_bytes"] / epoch["seconds"] / 1e6,
                    "client_cpu_s": best.get("client_cpu_s"),  # the peer scripts do not report it
                    "server_cpu_s": best["server_cpu_s"],
                    "proxy_cpu_s": best["proxy_cpu_s"],
                    "load": best["load"],
                    "all_x_floor": all_x,
                    **({"trace": best["trace"]} if "trace" in best else {}),
                }
            )
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\ncold remote epoch, {n:,} samples, plain loop bs256 (epoch time includes init and index)")
    base = "mosaic s3" if not args.skip_mosaic else None
    _common.print_table(rows, ratio=("epoch_s", base) if base else None)
    print("\ntargets (DESIGN §8): epoch <= 1.15 x floor; first sample <= 2 RTT + index + first shard")
    _common.print_table(
        [
            {
                "name": r["name"],
                "epoch x floor": round(r["x floor"], 3),
                "epoch met": "yes" if r["x floor"] <= 1.15 else "NO",
                "first sample / target": round(r["first_sample_s"] / r["ttfs_target_s"], 2),
                "first sample met": "yes" if r["first_sample_s"] <= r["ttfs_target_s"] else "NO",
            }
            for r in rows
        ]
    )
    if args.json:
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        link = {k: getattr(args, k) for k in ("latency", "bandwidth", "connection_bandwidth", "shard_mb")}
        Path(args.json).write_text(
            json.dumps({"date": date, "link": link, "dataset": info, "rows": rows}, indent=2)
        )
    return {"dataset": info, "rows": rows}


if __name__ == "__main__":
    main()
