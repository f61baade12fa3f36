"""Two checkouts of astreaming side by side in one run of ``python -m benchmarks`` workloads.

``sidebyside.py`` measures one astreaming against its peers; a change is judged by its effect on
astreaming, so this runs the same workloads with a second library, ``astreaming-before`` (the checkout
given by ``--before``, e.g. an exported ``main``), interleaved with this checkout and the peers in every
round: fresh processes, the same data, the same load. Ratios are this checkout ÷ each other library
within a round (``astreaming_over_peer``), so ``astreaming-before``'s ratio is after ÷ before.

    git -C /work/main archive HEAD | tar -x -C /tmp/before
    python benchmarks/ab_src.py large first ttfs --before /tmp/before --libs webdataset --rounds 3 \\
        --out benchmarks/results/footprint_s8.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sidebyside  # noqa: E402

BEFORE = "astreaming-before"
_run = sidebyside.run


def _src_run(lib: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``sidebyside.run`` with ``astreaming`` from this checkout and ``astreaming-before`` from --before."""
    if lib not in ("astreaming", BEFORE):
        return _run(lib, args, env)
    os.environ["ASTREAMING_SRC"] = SOURCES[lib]
    try:
        return _run("astreaming", args, env)
    finally:
        del os.environ["ASTREAMING_SRC"]


SOURCES: dict[str, str] = {"astreaming": str(HERE.parent)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workloads", nargs="+", choices=list(sidebyside.WORKLOADS))
    parser.add_argument("--before", required=True, help="the other checkout (a directory with astreaming/)")
    parser.add_argument("--libs", nargs="*", default=["webdataset"], choices=sidebyside.LIBS[1:])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", help="override the workloads' sample count (e.g. 50k)")
    parser.add_argument("--data-dir", default="/tmp/astreaming-bench-ab")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=50e6)
    parser.add_argument("--out", required=True, help="JSON file of every workload's figures")
    args = parser.parse_args(argv)
    SOURCES[BEFORE] = str(Path(args.before).resolve())
    sidebyside.run = _src_run  # type: ignore[assignment]
    sidebyside.LIBS.append(BEFORE)
    results = []
    for name in args.workloads:
        print(f"== {name}: {sidebyside.WORKLOADS[name][5]}", flush=True)
        results.append(sidebyside.workload(name, args, ["astreaming", BEFORE, *args.libs]))
    Path(args.out).write_text(json.dumps({"before": SOURCES[BEFORE], "results": results}, indent=1))
    for r in results:
        s, metric = r["summary"], r["metric"]
        print(f"\n{r['workload']} ({metric}, load {min(r['machine']['loadavg_1min']):.1f}-"
              f"{max(r['machine']['loadavg_1min']):.1f})")  # fmt: skip
        for lib, e in s.items():
            ratio = e.get("astreaming_over_peer")
            print(f"  {lib:<18} median {e['median']:.4g}  peak tree RSS {e['peak_tree_rss_mb']:.1f} MB"
                  + (f"  astreaming / this {ratio:.3f}" if ratio is not None else ""))  # fmt: skip


if __name__ == "__main__":
    main()
