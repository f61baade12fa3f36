"""Charts of the side-by-side results (``benchmarks/results/sidebyside-*.json``) as PNG files.

One chart per workload: each library's median (samples/s, or seconds where lower is better), with
astreaming's ratio to each peer over its bar. Needs matplotlib, which only the benchmark session
installs (``nox -s bench``); astreaming never imports it.

    python benchmarks/plot.py                     # reads and writes benchmarks/results/
    python benchmarks/plot.py --results DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LIBS = ["astreaming", "mosaic", "litdata", "webdataset"]
COLORS = {"astreaming": "#1f77b4", "mosaic": "#7f7f7f", "litdata": "#ff7f0e", "webdataset": "#2ca02c"}


def chart(result: dict[str, Any], out: Path) -> Path:
    """Draw one workload's chart into ``out``; return the file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    libs = [lib for lib in LIBS if lib in summary]
    per_s = result["metric"] == "samples_per_s"
    values = [summary[lib]["median"] / (1e3 if per_s else 1) for lib in libs]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    bars = ax.bar(libs, values, color=[COLORS[lib] for lib in libs])
    for bar, lib in zip(bars, libs, strict=True):
        ratio = summary[lib].get("astreaming_over_peer")
        label = "" if ratio is None else f"astreaming ÷ this: {ratio:.2f}x"
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)  # fmt: skip
    if not per_s and max(values) / max(min(values), 1e-9) > 30:
        ax.set_yscale("log")
    ax.set_ylabel("thousand samples/s (higher is better)" if per_s else "seconds (lower is better)")
    d = result["dataset"]
    ax.set_title(f"{result['what']}\n{d['samples']:,} samples, median of {len(result['rounds'])} rounds",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = out / f"sidebyside-{result['workload']}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--out", help="where the PNG files go (default: --results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    out = Path(args.out or results)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(results.glob("sidebyside-*.json")):
        print(chart(json.loads(path.read_text()), out))


if __name__ == "__main__":
    main()
