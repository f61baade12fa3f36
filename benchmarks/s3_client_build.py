"""The S3 client's build as astreaming does it (``S3Backend._client``: aiobotocore's
``AioSession.create_client('s3', ...)`` on the process's shared data loader), in fresh processes.

Each run is a new interpreter: it imports ``astreaming.storage.s3`` (aiobotocore, botocore, aiohttp;
reported as ``import_s``, outside the build), then times the first client's build (wall and CPU) and
the resident memory it added. The endpoint is never contacted (the build makes no request). With several
``--tree`` directories the runs alternate between those checkouts of astreaming (a before/after).

    python benchmarks/s3_client_build.py --runs 10 --tree /tmp/before --tree . --json out.json
    python benchmarks/s3_client_build.py --child --profile      # one run under cProfile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(profile: bool) -> dict[str, Any]:
    """One build in this process."""
    began = time.perf_counter()
    from astreaming.storage.s3 import S3Backend

    imported = time.perf_counter() - began
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    async def build() -> dict[str, Any]:
        backend = S3Backend(endpoint_url=os.environ.get("S3_ENDPOINT_URL", "http://127.0.0.1:9"))
        rss, cpu, wall = _rss_mb(), time.process_time(), time.perf_counter()
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
        await backend._client(None)
        out = {"build_wall_s": time.perf_counter() - wall, "build_cpu_s": time.process_time() - cpu}
        out["rss_added_mb"] = _rss_mb() - rss
        if profile:
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        await backend.aclose()
        return out

    result = asyncio.run(build())
    result["import_s"] = imported
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per tree")
    parser.add_argument("--tree", action="append", default=[], help="astreaming checkout (repeatable)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--child", action="store_true", help="one build in this process")
    parser.add_argument("--profile", action="store_true", help="with --child: cProfile to stderr")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.profile)), flush=True)
        return
    trees = [str(Path(t).resolve()) for t in args.tree] or [str(Path(__file__).resolve().parents[1])]
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in trees}
    load = [os.getloadavg()[0]]
    for _ in range(args.runs):
        for tree in trees:
            env = dict(os.environ, PYTHONPATH=tree)
            done = subprocess.run(
                [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True
            )
            runs[tree].append(json.loads(done.stdout.splitlines()[-1]))
    load.append(os.getloadavg()[0])
    keys = ("build_wall_s", "build_cpu_s", "rss_added_mb", "import_s")
    medians = {t: {k: statistics.median(r[k] for r in rs) for k in keys} for t, rs in runs.items()}
    for tree, m in medians.items():
        print(tree, " ".join(f"{k} {v:.3f}" for k, v in m.items()))
    if args.json:
        out = {
            "median": medians,
            "runs": runs,
            "loadavg_1min": load,
            "date": time.strftime("%Y-%m-%d %H:%M UTC"),
        }
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
