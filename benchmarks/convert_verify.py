"""``astreaming convert`` and ``astreaming verify``: throughput, side by side with what users run today.

- **convert**: a JSONL file of ``--rows`` rows (an int id, a ~200-character text, a float score: about
  250 bytes a row) into MDS with sha1 and xxh64 hashes, by ``astreaming convert`` with ``--workers 1``
  and ``--workers 2`` (its own process, timed from the command to its exit: imports, inference, writing
  and the merge), against a mosaicml-streaming 0.13.0 loop (``json.loads`` each line into its
  ``MDSWriter``, the same columns, size limit and hashes), also timed from starting its process to its
  exit (``convert_mosaic_loop_s``: its loop alone). Both outputs are then read back by astreaming and
  must hold the same rows.
- **verify** of that output: ``astreaming verify`` (sizes, both hashes, the first and last sample of
  each shard) and ``--quick`` on the local directory, against the floor of reading every file once and
  computing both hashes in a plain loop; and over HTTP through the fault proxy (``--latency``,
  ``--bandwidth``), against the link floor (bytes ÷ bandwidth). ``cli_startup_s`` (``astreaming
  --version``: the interpreter and the imports) is measured apart, and the ``after_startup`` ratios
  take it out of verify's time.

    python benchmarks/convert_verify.py                 # 200k rows, 3 rounds
    python benchmarks/convert_verify.py --rows 50k --rounds 1 --skip-mosaic
"""

from __future__ import annotations

import argparse
import hashlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

#: The JSONL's columns as mosaic's writer is told them (astreaming infers the same from the rows).
COLUMNS = {"id": "int", "text": "str", "score": "float64"}
SIZE_LIMIT = 1 << 24
HASHES = "sha1,xxh64"
_WORDS = ["shard", "sample", "stream", "epoch", "rank", "worker", "cache", "index", "remote", "batch"]


def write_jsonl(path: Path, rows: int) -> int:
    """Write the source file; returns its size in bytes."""
    with open(path, "w") as out:
        for i in range(rows):
            words = " ".join(_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(32))
            out.write(json.dumps({"id": i, "text": words[:200], "score": i / 7}) + "\n")
    return path.stat().st_size


def timed(argv: list[str]) -> float:
    """Seconds from starting ``argv`` to its successful exit."""
    began = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "astreaming.cli", *args, "--no-progress"]


def read_ids(root: Path) -> tuple[int, int]:
    """(rows, sum of ids) of a dataset, read by astreaming: both writers' outputs must agree."""
    from astreaming import StreamingDataset

    ds = StreamingDataset(local=str(root), batch_size=1)
    try:
        ids = [int(sample["id"]) for sample in ds]
    finally:
        ds.close()
    return len(ids), sum(ids)


def hash_floor(root: Path) -> float:
    """Seconds to read every file of ``root`` once and compute sha1 and xxh64 of it in a plain loop."""
    import xxhash

    began = time.perf_counter()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha, xxh = hashlib.sha1(), xxhash.xxh64()
            with open(path, "rb") as f:
                while block := f.read(8 << 20):
                    sha.update(block)
                    xxh.update(block)
    return time.perf_counter() - began


def dataset_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def one_round(work: Path, src: Path, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    expected = (rows, rows * (rows - 1) // 2)
    for workers in (1, 2):
        out = work / f"astreaming-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        convert = ["convert", str(src), str(out), "--hashes", HASHES, "--size-limit", str(SIZE_LIMIT)]
        result[f"convert_w{workers}_s"] = timed(cli(*convert, "--workers", str(workers)))
        if read_ids(out) != expected:
            raise RuntimeError(f"{out}: wrong rows after convert")
    if not args.skip_mosaic:
        out = work / "mosaic"
        shutil.rmtree(out, ignore_errors=True)
        began = time.perf_counter()
        peer = _common.run_peer(
            "mosaic_convert.py",
            ["--src", str(src), "--out", str(out), "--size-limit", str(SIZE_LIMIT), "--hashes", HASHES],
        )
        result["convert_mosaic_s"] = time.perf_counter() - began
        result["convert_mosaic_loop_s"] = peer["seconds"]
        if read_ids(out) != expected:
            raise RuntimeError(f"{out}: wrong rows from mosaic's writer")
    out = work / "astreaming-w1"
    # The command's fixed cost (interpreter, imports, argument parsing), paid once per run by every figure
    # above and below: with it apart, verify's own work can be set against the floors.
    result["cli_startup_s"] = timed([sys.executable, "-m", "astreaming.cli", "--version"])
    result["dataset_bytes"] = dataset_bytes(out)
    result["verify_s"] = timed(cli("verify", str(out)))
    result["verify_quick_s"] = timed(cli("verify", "--quick", str(out)))
    result["hash_floor_s"] = hash_floor(out)
    import serve_proxy

    with serve_proxy.serve(out, "http", args.latency, args.bandwidth) as served:
        before = served.stats()["bytes_sent"]
        result["verify_http_s"] = timed(cli("verify", served.root))
        result["verify_http_bytes"] = served.stats()["bytes_sent"] - before
    result["link_floor_s"] = result["dataset_bytes"] / args.bandwidth
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", default="200k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=50e6)
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument("--out", default=None, help="write the JSON results here")
    args = parser.parse_args(argv)
    rows = _common.count(args.rows)
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        src = work / "rows.jsonl"
        src_bytes = write_jsonl(src, rows)
        rounds = []
        for r in range(args.rounds):
            load = os.getloadavg()[0]
            figures = one_round(work, src, rows, args)
            figures["load"] = load
            rounds.append(figures)
            print(f"round {r + 1}: {json.dumps(figures)}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    mb = src_bytes / 1e6
    summary = {
        "rows": rows,
        "source_mb": round(mb, 1),
        "rounds": rounds,
        "median": med,
        "convert_w1_mb_s": mb / med["convert_w1_s"],
        "convert_w2_mb_s": mb / med["convert_w2_s"],
        "verify_x_hash_floor": med["verify_s"] / med["hash_floor_s"],
        "verify_http_x_link_floor": med["verify_http_s"] / med["link_floor_s"],
        "verify_after_startup_x_hash_floor": (med["verify_s"] - med["cli_startup_s"]) / med["hash_floor_s"],
        "verify_http_after_startup_x_link_floor": (med["verify_http_s"] - med["cli_startup_s"])
        / med["link_floor_s"],
    }
    if "convert_mosaic_s" in med:
        summary["convert_w1_x_mosaic"] = med["convert_w1_s"] / med["convert_mosaic_s"]
        summary["convert_w2_x_mosaic"] = med["convert_w2_s"] / med["convert_mosaic_s"]
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
