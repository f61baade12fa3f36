"""An epoch of a remote dataset whose cache is warm, against the same dataset read as a local-only one.

The second epoch of a job (with DataLoader workers that are not persistent, every epoch), or a second
job on a node, reads a remote dataset whose shards are all in ``local`` already. Such an epoch should run
at the speed of a local-only dataset: nothing is downloaded. Here the "remote" is a directory (a shared
filesystem), so no network or server is involved; its cache is filled by one epoch first.

Every measurement is a fresh process (construction excluded, imports before); the two kinds alternate,
``--rounds`` times, and with ``--before`` a second checkout of astreaming (``ASTREAMING_SRC``-style path)
runs the same warm epoch in the same rounds. Reported per run: samples/s of the epoch and the CPU time
of the loop thread during the epoch (``astreaming-loop``, which holds the GIL while it works).

    python benchmarks/warm_cache.py                                  # 1,200 shards of ~4 KB, 100k samples
    python benchmarks/warm_cache.py --before /tmp/before --rounds 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(remote: str, local: str) -> dict[str, Any]:
    """One epoch in this process: ``remote`` is ``-`` for a local-only read of ``local``."""
    import threading

    from astreaming import StreamingDataset

    ds = (
        StreamingDataset(local=local, batch_size=256)
        if remote == "-"
        else StreamingDataset(remote=remote, local=local, batch_size=256)
    )

    def loop_thread_ms() -> float:
        for thread in threading.enumerate():
            if thread.name == "astreaming-loop":
                with open(f"/proc/self/task/{thread.native_id}/schedstat") as stat:
                    return int(stat.read().split()[0]) / 1e6
        return 0.0  # not started yet

    before = loop_thread_ms()  # construction read a remote's index on it: not the epoch's
    began, count, total = time.perf_counter(), 0, 0
    for sample in ds:
        count += 1
        total += sample["id"]
    seconds = time.perf_counter() - began
    loop_ms = loop_thread_ms() - before
    stats = ds.stats()
    ds.close()
    return {
        "samples": count,
        "id_sum": total,
        "samples_per_s": count / seconds,
        "loop_thread_cpu_ms": loop_ms,
        "cache_hits": stats["cache_hits"],
        "shards_downloaded": stats["shards_downloaded"],
    }


def write(remote: Path, samples: int, size_limit: int) -> None:
    from astreaming import MDSWriter

    with MDSWriter(out=str(remote), columns={"id": "int", "blob": "bytes"}, size_limit=size_limit) as out:
        for i in range(samples):
            out.write({"id": i, "blob": bytes(i % 251 for _ in range(30))})


def run(src: Path, remote: str, local: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import warm_cache, json; "
    code += f"print(json.dumps(warm_cache.child({remote!r}, {local!r})))"
    # In ``src``: ``python -c`` puts the working directory first on the path, before PYTHONPATH.
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=src, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--size-limit", type=int, default=4096, help="shard size limit in bytes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another checkout of astreaming, run the same way")
    parser.add_argument("--json", type=Path, help="write the runs and medians here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="astreaming-warm-"))
    try:
        remote, cache = work / "remote", work / "cache"
        write(remote, args.samples, args.size_limit)
        shards = len(list(remote.glob("*.mds")))
        want = args.samples * (args.samples - 1) // 2
        run(ROOT, str(remote), str(cache))  # fills the cache
        kinds = {"warm remote": (ROOT, str(remote), str(cache)), "local only": (ROOT, "-", str(remote))}
        if args.before is not None:
            kinds["warm remote, before"] = (args.before, str(remote), str(cache))
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for round_ in range(args.rounds):
            for kind, (src, source, local) in kinds.items():
                result = run(src, source, local)
                if (result["samples"], result["id_sum"]) != (args.samples, want):
                    raise SystemExit(f"{kind}: wrong samples {result}")
                runs[kind].append(result)
                print(
                    f"round {round_ + 1} {kind:20s} {result['samples_per_s']:>9,.0f} samples/s, loop thread "
                    f"{result['loop_thread_cpu_ms']:6.1f} ms, downloaded {result['shards_downloaded']}",
                    flush=True,
                )
        medians = {
            kind: {
                "samples_per_s": statistics.median(r["samples_per_s"] for r in rs),
                "loop_thread_cpu_ms": statistics.median(r["loop_thread_cpu_ms"] for r in rs),
            }
            for kind, rs in runs.items()
        }
        print(f"{shards} shards, {args.samples} samples; medians of {args.rounds}:")
        for kind, median in medians.items():
            print(
                f"  {kind:20s} {median['samples_per_s']:>9,.0f} samples/s, loop thread "
                f"{median['loop_thread_cpu_ms']:.1f} ms"
            )
        if args.json is not None:
            report = {"shards": shards, "samples": args.samples, "runs": runs, "medians": medians}
            args.json.write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
