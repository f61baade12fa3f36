"""What a digest of a downloaded shard costs: MB/s of the candidate hashes on this machine.

Version pins (``astreaming/engine/versioncheck.py``) keep a digest of the bytes of every file whose
version token is opaque (an HTTP or Azure ETag), computed over the file just downloaded, and hash a file
again when its token changed. Each algorithm hashes a ``--mib`` MiB buffer in memory and the same bytes
from a file in 1 MiB reads (the page cache holds it, as it holds a file just written); the best of
``--repeat`` runs. Prints a table and writes JSON with the date and the load average.

    python benchmarks/digest_speed.py [--mib 64] [--repeat 3] [--json benchmarks/results/digest-speed.json]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xxhash

_CHUNK = 1 << 20


def _hashers() -> dict[str, Callable[[], Any]]:
    class Crc32:
        def __init__(self) -> None:
            self.value = 0

        def update(self, data: bytes | memoryview) -> None:
            self.value = zlib.crc32(data, self.value)

    return {
        "zlib.crc32": Crc32,
        "md5": hashlib.md5,
        "blake2b": hashlib.blake2b,
        "sha256": hashlib.sha256,
        "xxh64": xxhash.xxh64,
        "xxh3_128": xxhash.xxh3_128,
    }


def _file(make: Callable[[], Any], path: Path) -> None:
    hasher = make()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = os.urandom(args.mib << 20)
    load = os.getloadavg()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="digest-speed-") as tmp:
        path = Path(tmp) / "blob"
        path.write_bytes(data)
        for name, make in _hashers().items():
            memory = file = float("inf")
            for _ in range(args.repeat):
                began = time.perf_counter()
                make().update(data)
                memory = min(memory, time.perf_counter() - began)
                began = time.perf_counter()
                _file(make, path)
                file = min(file, time.perf_counter() - began)
            rows[name] = {"memory_MBps": len(data) / memory / 1e6, "file_MBps": len(data) / file / 1e6}
    print(f"{'algorithm':<12} {'memory MB/s':>12} {'file MB/s':>10}")
    for name, row in rows.items():
        print(f"{name:<12} {row['memory_MBps']:>12.0f} {row['file_MBps']:>10.0f}")
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "mib": args.mib,
        "repeat": args.repeat,
        "results": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
