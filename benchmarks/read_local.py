"""Cached local read throughput: LocalDataset vs a minimal hand-written mmap loop (DESIGN §8).

Writes two MDS datasets into a temporary directory:

- ``small``: 1M samples of (int, str, bytes), about 30 bytes each;
- ``large``: 100k samples of (int, str, bytes), about 10 KB each;

then times a plain ``for i in range(len(ds)): ds[i]`` loop over :class:`LocalDataset` and, side by side,
a hand-written loop that maps each shard and decodes the same three columns into a dict. Prints
samples/s for each and the ratio (the target is within 1.5x of the hand-written loop).

Usage: ``python benchmarks/read_local.py [--small 1000000] [--large 100000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import mmap
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from astreaming.format.local import LocalDataset
from astreaming.format.mds.writer import MDSWriter

COLUMNS = {"id": "int", "text": "str", "blob": "bytes"}


def write_dataset(out: Path, num: int, payload: int) -> float:
    """Write ``num`` samples whose blob column has ``payload`` bytes; return the seconds taken."""
    blob = bytes(range(256)) * (payload // 256) + bytes(payload % 256)
    start = time.perf_counter()
    with MDSWriter(out=str(out), columns=COLUMNS, size_limit="64mb") as writer:
        for i in range(num):
            writer.write({"id": i, "text": f"sample-{i}", "blob": blob[: payload - (i % 7)]})
    return time.perf_counter() - start


def read_localdataset(root: Path) -> int:
    """The loop a user writes: every sample through ``LocalDataset.__getitem__``."""
    ds = LocalDataset(root)
    total = 0
    for i in range(len(ds)):
        sample = ds[i]
        total += sample["id"]
    ds.close()
    return total


def read_handwritten(root: Path) -> int:
    """A minimal loop: map each shard, read offsets, decode blob/id/text (sorted column order) to a dict."""
    index = json.loads((root / "index.json").read_text())
    lengths = struct.Struct("<2I").unpack_from  # blob and text are the variable-size columns
    total = 0
    for shard in index["shards"]:
        with open(root / shard["raw_data"]["basename"], "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        num = struct.unpack_from("<I", mm, 0)[0]
        offs = memoryview(mm)[4 : 8 + 4 * num].cast("I")
        for i in range(num):
            begin = offs[i]
            n_blob, n_text = lengths(mm, begin)
            p1 = begin + 8 + n_blob
            p2 = p1 + 8
            sample = {
                "blob": mm[begin + 8 : p1],
                "id": int.from_bytes(mm[p1:p2], "little", signed=True),
                "text": mm[p2 : p2 + n_text].decode("utf-8"),
            }
            total += sample["id"]
        offs.release()
        mm.close()
    return total


def best_rate(fn: Callable[[Path], int], root: Path, num: int, repeat: int) -> tuple[float, int]:
    """Best samples/s over ``repeat`` runs (the first run also warms the page cache)."""
    best = float("inf")
    result = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(root)
        best = min(best, time.perf_counter() - start)
    return num / best, result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print one line per dataset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=1_000_000, help="samples in the ~30 B dataset")
    parser.add_argument("--large", type=int, default=100_000, help="samples in the ~10 KB dataset")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="astreaming-bench-") as tmp:
        for name, num, payload in (("small", args.small, 12), ("large", args.large, 10_000)):
            root = Path(tmp) / name
            write_s = write_dataset(root, num, payload)
            ours, total_a = best_rate(read_localdataset, root, num, args.repeat)
            hand, total_b = best_rate(read_handwritten, root, num, args.repeat)
            assert total_a == total_b == num * (num - 1) // 2, "the two loops must read the same samples"
            results[name] = {"write_s": write_s, "localdataset_sps": ours, "handwritten_sps": hand}
            print(
                f"{name:5s} {num:>9,d} samples  write {num / write_s:>11,.0f}/s  "
                f"LocalDataset {ours:>11,.0f}/s  hand-written {hand:>11,.0f}/s  ratio {hand / ours:.2f}x"
            )
    return results


if __name__ == "__main__":
    main()
