"""Two ways to read a cached MDS dataset segment by segment, as astreaming's walk does (64 samples a segment).

- ``mmap``: astreaming's own shard reader (``MDSReader``: the shard mapped, a segment decoded by its
  ``get_many``), its mapped pages given back every 2 MB decoded, as the walk does (``engine/readers.py``);
- ``pread``: each segment's byte span read with one ``os.pread`` into a new ``bytes``, and decoded
  from it by the same compiled decoder (two copies of every byte, no mapping, no page faults on the
  file).

Both decode the ``large``/``small`` side-by-side datasets' three columns (``blob`` bytes, ``id`` int,
``text`` str) into a dict, in file order (a shuffled segment's samples can span a whole shard, where a
span read would read far more than it decodes: this measures the sequential case only). Each mode runs
in fresh processes, alternating, and reports µs per sample, minor faults and the process's peak RSS.

    python benchmarks/read_segments.py /tmp/astreaming-bench/large-20000-1000/astreaming --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from astreaming.format.index import parse_index
from astreaming.format.mds.reader import MDSReader

SEGMENT = 64
RELEASE_EVERY = 2 << 20


def _shards(data: Path) -> list[tuple[Path, int]]:
    index = json.loads((data / "index.json").read_text())
    for shard in index["shards"]:
        if shard["column_names"] != ["blob", "id", "text"] or shard["compression"]:
            raise SystemExit(f"{data}: expected uncompressed shards of blob, id, text")
    return [(data / s["raw_data"]["basename"], int(s["samples"])) for s in index["shards"]]


def read_mmap(shards: list[tuple[Path, int]]) -> int:
    data = shards[0][0].parent
    entries = parse_index((data / "index.json").read_bytes(), source=str(data))
    count = 0
    for (path, samples), entry in zip(shards, entries, strict=True):
        reader = MDSReader.open(path, entry)  # type: ignore[arg-type]
        offsets, spent = reader.offsets, 0
        for low in range(0, samples, SEGMENT):
            high = min(low + SEGMENT, samples)
            count += len(reader.get_many(range(low, high)))
            spent += int(offsets[high]) - int(offsets[low])
            if spent >= RELEASE_EVERY:
                reader.release_pages()
                spent = 0
        reader.close()
    return count


def read_pread(shards: list[tuple[Path, int]]) -> int:
    data = shards[0][0].parent
    entries = parse_index((data / "index.json").read_bytes(), source=str(data))
    count = 0
    for (path, samples), entry in zip(shards, entries, strict=True):
        plan = MDSReader.plan(entry, source=str(path))  # type: ignore[arg-type]
        fd = os.open(path, os.O_RDONLY)
        offsets = memoryview(os.pread(fd, 4 * (samples + 1), 4)).cast("I")
        for low in range(0, samples, SEGMENT):
            high = min(low + SEGMENT, samples)
            base, span = offsets[low], offsets[high] - offsets[low]
            # ``bytes``, as a mapping's slices are: each decoded column is ``bytes`` too.
            segment = os.pread(fd, span, base)
            # The same compiled decoder, over the segment's bytes: offsets relative to its first byte.
            relative = [offsets[i] - base for i in range(low, high + 1)]
            count += len(plan.bind_many(segment, relative)(range(high - low)))
        os.close(fd)
    return count


MODES: dict[str, Callable[[list[tuple[Path, int]]], int]] = {"mmap": read_mmap, "pread": read_pread}


def child(data: Path, mode: str) -> dict[str, Any]:
    shards = _shards(data)
    MODES[mode](shards)  # once to warm the page cache and the allocator
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    began = time.perf_counter()
    count = MODES[mode](shards)
    seconds = time.perf_counter() - began
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "us_per_sample": seconds / count * 1e6, "minor_faults": faults, "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data", type=Path, help="an astreaming side-by-side dataset directory")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=sorted(MODES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.data, args.child)))
        return
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            argv = [sys.executable, __file__, str(args.data), "--child", mode]
            out = subprocess.run(argv, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(out.stdout))
    for mode, results in runs.items():
        medians = {key: statistics.median(r[key] for r in results) for key in results[0] if key != "mode"}
        print(f"{mode:6s} " + ", ".join(f"{key} {value:.2f}" for key, value in medians.items()))
    if args.json is not None:
        args.json.write_text(json.dumps({"data": str(args.data), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
