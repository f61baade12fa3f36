"""Side by side with litdata, webdataset and mosaicml-streaming: ``python -m benchmarks <workload>``.

Each library reads its own native format written by its own writer (``peers/run_lib.py``), from the same
samples (``_common.make_sample``) with the same samples per shard. Every measurement is a fresh process;
the libraries run interleaved (the order rotates each round), ``--rounds`` rounds (default 3), and each
figure is reported as the ratio astreaming ÷ peer *within a round*, median over rounds: on a shared,
loaded machine absolute figures move with the load, ratios taken side by side much less.

Workloads:

- ``small``: cached, 200k small samples (int, ~12-char str, <= 10 B bytes), plain loop;
- ``small-loader``: the same through each library's DataLoader, 2 workers, batch 256;
- ``large``: cached, 20k samples of ~10 KB, plain loop;
- ``first``: construction -> first sample of the cached small dataset;
- ``remote``: cold epoch of the large dataset from moto S3 behind the fault proxy (20 ms per request,
  50 MB/s shared), against the floor (bytes over the link ÷ bandwidth); webdataset, which has no S3
  client, reads presigned URLs through ``pipe:curl``;
- ``ttfs``: time to the first sample over that link, from construction;
- ``all``: every workload above.

Every run checks the count and an order-independent hash of every sample's bytes inside the timed loop
(``run_lib.Check``), against the values computed here. Results go to ``benchmarks/results/
sidebyside-<workload>.json``; ``benchmarks/results/sidebyside.md`` is rebuilt from every such file, and
``benchmarks/plot.py`` draws the charts.

    python -m benchmarks small --rounds 3
    python -m benchmarks all --libs astreaming litdata
    python -m benchmarks remote --samples 10k
    ASTREAMING_SRC=/tmp/old-checkout python -m benchmarks first --out /tmp/before   # another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

import _common  # noqa: E402
import run_lib  # noqa: E402
import serve_proxy  # noqa: E402

LIBS = ["astreaming", "mosaic", "litdata", "webdataset"]
RESULTS = HERE / "results"
DEFAULT_PEER2_VENV = Path("/work/peer2-venv")

#: workload -> (dataset kind, default samples, samples per shard, metric, higher is better, what)
WORKLOADS: dict[str, tuple[str, int, int, str, bool, str]] = {
    "small": ("small", 200_000, 10_000, "samples_per_s", True, "cached, small samples, plain loop"),
    "small-loader": (
        "small",
        200_000,
        10_000,
        "samples_per_s",
        True,
        "cached, small samples, DataLoader 2 workers, batch 256",
    ),
    "large": ("large", 20_000, 1_000, "samples_per_s", True, "cached, ~10 KB samples, plain loop"),
    "first": ("small", 200_000, 10_000, "first_sample_s", False, "construction -> first sample, cached"),
    "remote": ("large", 20_000, 1_000, "seconds", False, "cold S3 epoch through 20 ms / 50 MB/s"),
    "ttfs": ("large", 20_000, 1_000, "first_sample_s", False, "time to first sample, same link"),
}


def python_of(lib: str) -> str:
    """The interpreter of ``lib``'s environment."""
    if lib == "astreaming":
        return sys.executable
    if lib == "mosaic":
        return str(_common.peer_python())
    return str(Path(os.environ.get("PEER2_VENV", DEFAULT_PEER2_VENV)) / "bin" / "python")


def run(lib: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``run_lib.py`` for ``lib`` in a fresh process; its JSON plus the peak RSS of its process tree."""
    paths = [str(HERE)] + ([str(_common.STUBS_DIR)] if lib == "mosaic" else [])
    if lib == "astreaming" and os.environ.get("ASTREAMING_SRC"):
        # Measure another checkout of astreaming (a before/after comparison) with this venv's packages.
        paths.insert(0, os.environ["ASTREAMING_SRC"])
    full_env = dict(os.environ, **(env or {}), PYTHONPATH=os.pathsep.join(paths))
    argv = [python_of(lib), str(HERE / "peers" / "run_lib.py"), "--lib", lib, *args]
    proc, peak_mb = _common.run_measured(argv, env=full_env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"{' '.join(argv)} printed no JSON:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line)
    result["peak_tree_rss_mb"] = peak_mb
    return result


def torch_floor_mb(lib: str) -> float:
    """Peak RSS (MB) of a bare ``import torch, numpy`` in ``lib``'s environment, measured like a run.

    Every process of these workloads imports torch (about 218 MB), and what torch's import holds depends
    on how its shared libraries sit in the page cache: the same torch wheel installed a minute earlier
    peaked 57 MB higher at import (275 against 218 MB) than after the page cache was dropped and read
    back; how much of a file the kernel maps per fault depends on how its pages entered the cache. A
    library's own cost is therefore its run's peak minus this floor, taken in the same round.
    """
    _, peak_mb = _common.run_measured([python_of(lib), "-c", "import torch, numpy"], timeout=600)
    return peak_mb


def warm_page_cache(root: Path) -> int:
    """Read every file under ``root`` once; returns the bytes read.

    A cached workload must find its files in the page cache, and on this VM it does not always (its
    kernel pages out memory DAMON sees unused for a minute): files read a minute earlier were partly
    read from disk again (15-35 major faults in one astreaming epoch of ``large``, adding up to 180 ms
    of waiting to a 150 ms run, and the same for the peers). Reading them
    just before each run, in this process, makes every library's run start from a warm cache; it adds
    nothing to the run's own memory (page cache is not part of a process's resident set until mapped).
    """
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total


def ensure_data(root: Path, libs: list[str], kind: str, num: int, per_shard: int) -> Path:
    """Each library's dataset of ``num`` samples of ``kind`` under ``root/<kind>-<num>-<per_shard>/<lib>``,
    written by its own writer unless an earlier run wrote the same."""
    base = root / f"{kind}-{num}-{per_shard}"
    for lib in libs:
        out = base / lib
        marker = base / f"{lib}.written.json"
        want = {"lib": lib, "kind": kind, "num": num, "per_shard": per_shard}
        if marker.exists() and json.loads(marker.read_text()).get("want") == want and out.exists():
            continue
        if out.exists():
            import shutil

            shutil.rmtree(out)
        print(f"writing {lib} {kind} x {num:,} ({per_shard:,} per shard)", flush=True)
        done = run(lib, ["--op", "write", "--data", str(out), "--kind", kind, "--num", str(num),
                         "--per-shard", str(per_shard)])  # fmt: skip
        marker.write_text(json.dumps({"want": want, "written": done}))
    return base


def check(lib: str, out: dict[str, Any], want: dict[str, int]) -> None:
    got = {k: out[k] for k in want}
    if got != want:
        raise RuntimeError(f"{lib} {out.get('op')} {out.get('mode')}: read {got}, expected {want}")


def presigned(served: serve_proxy.Served, keys: list[str]) -> list[str]:
    """Presigned GET URLs of ``keys`` in the bench bucket, through the proxy (for webdataset's curl)."""
    import botocore.session

    env = served.env
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    try:
        return [
            client.generate_presigned_url(
                "get_object", Params={"Bucket": serve_proxy.BUCKET, "Key": key}, ExpiresIn=86400
            )
            for key in keys
        ]
    finally:
        client.close()


def workload(name: str, args: argparse.Namespace, libs: list[str]) -> dict[str, Any]:
    """Run ``name`` for ``libs``, ``args.rounds`` interleaved rounds; return the figures."""
    kind, default_num, per_shard, metric, _, _ = WORKLOADS[name]
    num = _common.count(args.samples) if args.samples else default_num
    base = ensure_data(Path(args.data_dir), libs, kind, num, per_shard)
    limit = 1 if name in ("first", "ttfs") else 0
    want = run_lib.expected(num if not limit else 1, kind) if not limit else None
    rounds: list[dict[str, dict[str, Any]]] = []
    load = [os.getloadavg()[0]]
    remote = name in ("remote", "ttfs")
    served_ctx = serve_proxy.serve(base, "s3", args.latency, args.bandwidth) if remote else None
    served = served_ctx.__enter__() if served_ctx is not None else None
    try:
        for r in range(args.rounds):
            order = libs[r % len(libs) :] + libs[: r % len(libs)]
            results: dict[str, dict[str, Any]] = {}
            for lib in order:
                argv = ["--batch-size", "256"]
                env: dict[str, str] = {}
                if name == "small-loader":
                    argv += ["--op", "iter", "--mode", "loader", "--workers", "2", "--data", str(base / lib)]
                elif name == "first":
                    argv += ["--op", "first", "--data", str(base / lib)]
                elif not remote:
                    argv += ["--op", "iter", "--data", str(base / lib)]
                else:
                    assert served is not None
                    env = served.env
                    argv += ["--op", "remote", "--limit", str(limit)]
                    if lib == "webdataset":
                        names = sorted(p.name for p in (base / lib).glob("shard-*.tar"))
                        urls = presigned(served, [f"data/{lib}/{n}" for n in names])
                        listing = base / "webdataset-urls.json"
                        listing.write_text(json.dumps(urls))
                        argv += ["--data", str(listing)]
                    else:
                        argv += ["--data", f"{served.root}/{lib}"]
                if served is None:
                    warm_page_cache(base / lib)
                before = served.stats() if served is not None else None
                out = run(lib, argv, env)
                if served is not None and before is not None:
                    after = served.stats()
                    out["link_bytes"] = after["bytes_sent"] - before["bytes_sent"]
                    out["requests"] = after["requests"] - before["requests"]
                    out["floor_s"] = out["link_bytes"] / args.bandwidth
                    out["x_floor"] = out["seconds"] / out["floor_s"] if out["floor_s"] else None
                out["torch_floor_mb"] = torch_floor_mb(lib)
                out["over_torch_mb"] = out["peak_tree_rss_mb"] - out["torch_floor_mb"]
                if want is not None:
                    check(lib, out, want)
                elif out["samples"] != 1:
                    raise RuntimeError(f"{lib}: no first sample")
                results[lib] = out
                print(f"  round {r + 1} {lib:<11} {metric} = {out[metric]:.4g}", flush=True)
            rounds.append(results)
            load.append(os.getloadavg()[0])
    finally:
        if served_ctx is not None:
            served_ctx.__exit__(None, None, None)
    return summarise(name, rounds, libs, num, per_shard, load, args)


def summarise(
    name: str,
    rounds: list[dict[str, dict[str, Any]]],
    libs: list[str],
    num: int,
    per_shard: int,
    load: list[float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    kind, _, _, metric, higher, what = WORKLOADS[name]
    summary: dict[str, Any] = {}
    for lib in libs:
        values = [r[lib][metric] for r in rounds]
        entry: dict[str, Any] = {
            "median": statistics.median(values),
            "values": values,
            "peak_tree_rss_mb": statistics.median(r[lib]["peak_tree_rss_mb"] for r in rounds),
            "version": rounds[0][lib].get("version"),
        }
        if lib != "astreaming" and "astreaming" in libs:
            ratios = [r["astreaming"][metric] / r[lib][metric] for r in rounds]
            entry["astreaming_over_peer"] = statistics.median(ratios)
            entry["ratios"] = ratios
        extras = ("cpu_us_per_sample", "x_floor", "link_bytes", "requests", "first_sample_s", "over_torch_mb")
        for extra in extras:
            if extra in rounds[0][lib] and rounds[0][lib][extra] is not None:
                entry[extra] = statistics.median(r[lib][extra] for r in rounds)
        summary[lib] = entry
    return {
        "workload": name,
        "what": what,
        "metric": metric,
        "higher_is_better": higher,
        "dataset": {"kind": kind, "samples": num, "samples_per_shard": per_shard},
        "link": {"latency_s": args.latency, "bandwidth_Bps": args.bandwidth}
        if name in ("remote", "ttfs")
        else None,
        "rounds": rounds,
        "summary": summary,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1min": load,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    }


def fmt(value: float, metric: str) -> str:
    if metric == "samples_per_s":
        return f"{value / 1e3:,.1f}k samples/s"
    return f"{value * 1e3:,.0f} ms" if value < 1 else f"{value:,.2f} s"


def rss_cell(entry: dict[str, Any]) -> str:
    """``peak (+own)`` of a summary entry; results from before the torch floor was measured show the peak."""
    cell = f"{entry['peak_tree_rss_mb']:.0f}"
    if "over_torch_mb" in entry:
        cell += f" (+{entry['over_torch_mb']:.1f})"
    return cell


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table of every workload's result: astreaming's median and its ratio to each peer."""
    peers = [lib for lib in LIBS[1:] if any(lib in r["summary"] for r in results)]
    versions = {
        lib: next((r["summary"][lib]["version"] for r in results if lib in r["summary"]), "") for lib in peers
    }
    head = " | ".join(f"÷ {lib} {versions[lib]}" for lib in peers)
    lines = [f"| workload | astreaming (median) | {head} |", "|---|---|" + "---|" * len(peers)]
    for r in results:
        s, metric = r["summary"], r["metric"]
        ours = s["astreaming"]
        cell = fmt(ours["median"], metric)
        if "x_floor" in ours and r["workload"] == "remote":
            cell += f" = {ours['x_floor']:.2f}x the floor"
        cells = []
        for lib in peers:
            if lib not in s:
                cells.append("")
                continue
            ratio = s[lib]["astreaming_over_peer"]
            cells.append(f"{ratio:.2f}x ({fmt(s[lib]['median'], metric)})")
        direction = (
            "throughput ratio, > 1: astreaming faster"
            if r["higher_is_better"]
            else ("time ratio, < 1: astreaming faster")
        )
        d = r["dataset"]
        label = f"{r['what']} ({d['samples']:,} samples, {d['samples_per_shard']:,}/shard; {direction})"
        lines.append(f"| {label} | {cell} | " + " | ".join(cells) + " |")
    rss = ["", "Peak RSS of the process tree (MB, median; in brackets, above a bare `import torch, numpy` "
           "in the same environment and round):", "", "| workload | " + " | ".join(
        ["astreaming", *peers]) + " |", "|---|" + "---|" * (len(peers) + 1)]  # fmt: skip
    for r in results:
        s = r["summary"]
        vals = [rss_cell(s[lib]) if lib in s else "" for lib in ["astreaming", *peers]]
        rss.append(f"| {r['workload']} | " + " | ".join(vals) + " |")
    loads = [x for r in results for x in r["machine"]["loadavg_1min"]]
    counts = sorted({len(r["rounds"]) for r in results})
    rounds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    note = (
        f"\nMachine: {results[0]['machine']['cpus']} CPUs, shared; 1-minute load average during the runs "
        f"{min(loads):.1f}-{max(loads):.1f}. Ratios are astreaming ÷ peer within one round of interleaved "
        f"fresh processes, median of {rounds} rounds; the peer's median is in brackets."
    )
    return "\n".join(lines) + "\n" + "\n".join(rss) + "\n" + note + "\n"


def write_results(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"sidebyside-{result['workload']}.json").write_text(json.dumps(result, indent=1))
    order = list(WORKLOADS)
    found = [json.loads(p.read_text()) for p in out_dir.glob("sidebyside-*.json")]
    found.sort(key=lambda r: order.index(r["workload"]) if r["workload"] in order else len(order))
    (out_dir / "sidebyside.md").write_text(table(found))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="See benchmarks/sidebyside.py for what each workload measures.",
    )
    parser.add_argument("workload", choices=[*WORKLOADS, "all"])
    parser.add_argument("--libs", nargs="+", default=LIBS, choices=LIBS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", help="override the workload's sample count (e.g. 50k)")
    parser.add_argument("--data-dir", default="/tmp/astreaming-bench", help="datasets are kept here")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=50e6, help="bytes/s shared by all connections")
    parser.add_argument("--out", default=str(RESULTS), help="directory of the JSON and markdown results")
    args = parser.parse_args(argv)
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    for name in names:
        print(f"== {name}: {WORKLOADS[name][5]}", flush=True)
        result = workload(name, args, list(args.libs))
        write_results(result, Path(args.out))
    print((Path(args.out) / "sidebyside.md").read_text())


if __name__ == "__main__":
    main()
