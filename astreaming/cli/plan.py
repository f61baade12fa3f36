"""``astreaming plan DATASET [DATASET ...]``: what each rank reads in an epoch, the cache it needs, how
well it shuffles.

Several datasets are the streams of one StreamingDataset (``streams=[Stream(...), ...]``, in that order),
mixed by ``--proportion``, ``--repeat`` or ``--choose`` (one value per stream, empty for none: ``--repeat
0.5, --choose ,40``) and ``--batching-method``. Reads only each dataset's index.json, then runs the order
code the datasets themselves run (``astreaming.order``), so the samples shown are the ones training will
see for these settings. Use it to choose ``shuffle_block_size`` and ``num_canonical_nodes`` before
launching (see :mod:`astreaming.cli.plancalc` for the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import Any

import numpy as np

from astreaming.cli._fmt import fmt_bytes, plural, table
from astreaming.cli.inspect import index_location, read_index
from astreaming.cli.plancalc import RankPlan, cache_peak, plan_ranks, shuffle_spread
from astreaming.errors import ConfigError
from astreaming.format.index import parse_index
from astreaming.order import EpochSpec, StreamWeights, World
from astreaming.order.spec import BATCHING_METHODS, PARTITION_ALGOS, SAMPLING_METHODS, SHUFFLE_ALGOS
from astreaming.storage import redact

__all__ = ["register", "run"]

#: Without --ranks, every rank is planned up to this many; beyond, the ranks of node 0.
_ALL_RANKS_UP_TO = 64


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``plan`` subcommand to ``sub``."""
    p = sub.add_parser(
        "plan",
        help="per rank: first samples and shards of an epoch, cache needed, shuffle spread",
        description=(
            "Plan an epoch of DATASET for a job shape and shuffle settings, with the order code "
            "training uses: per rank, its first samples and the shards they need, the cache that avoids "
            "downloading a shard twice (peak raw bytes of shards between first and last use; per node "
            "too), and the shuffle spread (1.0 = a shard's samples as spread out as in a uniform "
            "shuffle). Shuffling is on unless --no-shuffle."
        ),
    )
    p.add_argument(
        "datasets",
        nargs="+",
        metavar="DATASET",
        help="dataset directory or URL, or its index.json; several: streams",
    )
    for name, what in (
        ("proportion", "relative share of the epoch"),
        ("repeat", "times each sample is seen per epoch"),
        ("choose", "samples per epoch"),
    ):
        p.add_argument(
            f"--{name}", metavar="V,V", help=f"per stream, in DATASET order, empty for none (0.5,,2): {what}"
        )
    p.add_argument("--replication", type=int, metavar="R", help="consecutive ranks that see the same samples")
    p.add_argument("--sampling-method", default="balanced", choices=SAMPLING_METHODS)
    p.add_argument("--sampling-granularity", type=int, default=1, metavar="N")
    p.add_argument("--nodes", type=int, default=1, metavar="N", help="physical nodes (default 1)")
    p.add_argument("--ranks-per-node", type=int, default=1, metavar="N", help="ranks per node (default 1)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="DataLoader workers per rank")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="per-rank batch size (default 1)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="plan without shuffling")
    p.add_argument("--shuffle-algo", default="py1e", choices=SHUFFLE_ALGOS)
    p.add_argument("--shuffle-block-size", type=int, metavar="N", help="default: mosaic's for the C used")
    p.add_argument("--num-canonical-nodes", type=int, metavar="C", help="default: mosaic's for the algo")
    p.add_argument("--seed", type=int, default=9176, metavar="S", help="shuffle_seed (default 9176)")
    p.add_argument("--partition-algo", default="relaxed", choices=PARTITION_ALGOS)
    p.add_argument("--batching-method", default="random", choices=BATCHING_METHODS)
    p.add_argument("--epoch-size", metavar="N", help="samples per epoch (default: the dataset)")
    p.add_argument("--epoch", type=int, default=0, metavar="E", help="epoch to plan (default 0)")
    p.add_argument("--ranks", metavar="R,R", help=f"ranks to plan (default: all up to {_ALL_RANKS_UP_TO})")
    p.add_argument("--samples", type=int, default=8, metavar="N", help="first samples shown per rank")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per download attempt (default 60)"
    )
    p.set_defaults(handler=run)


def _ranks(text: str | None, num_ranks: int, ranks_per_node: int) -> list[int]:
    if text is None:
        return list(range(num_ranks if num_ranks <= _ALL_RANKS_UP_TO else ranks_per_node))
    try:
        ranks = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--ranks: expected comma-separated rank numbers, got {text!r}") from None
    bad = [r for r in ranks if not 0 <= r < num_ranks]
    if bad or not ranks:
        raise ConfigError(f"--ranks: ranks must be in [0, {num_ranks}), got {text!r}")
    return ranks


def _weights(args: argparse.Namespace, streams: int) -> list[StreamWeights]:
    """Each stream's proportion/repeat/choose from the comma lists (an empty item: not set)."""
    values: dict[str, list[float | None]] = {}
    for name in ("proportion", "repeat", "choose"):
        text = getattr(args, name)
        if text is None:
            continue
        items = [v.strip() for v in text.split(",")]
        if len(items) != streams:
            raise ConfigError(
                f"--{name}: {len(items)} values for {streams} datasets (leave one empty for none)"
            )
        try:
            values[name] = [None if v in ("", "-") else float(v) for v in items]
        except ValueError:
            raise ConfigError(f"--{name}: expected numbers (or nothing), got {text!r}") from None
    out = []
    for k in range(streams):
        choose = values.get("choose", [None] * streams)[k]
        if choose is not None and choose != int(choose):
            raise ConfigError(f"--choose: a number of samples, got {choose}")
        out.append(
            StreamWeights(
                proportion=values.get("proportion", [None] * streams)[k],
                repeat=values.get("repeat", [None] * streams)[k],
                choose=None if choose is None else int(choose),
            )
        )
    return out


def _first_shards(plan: RankPlan, count: int) -> list[int]:
    """The distinct shards of the first ``count`` samples, in order of first need."""
    head = plan.shards[:count]
    _, first = np.unique(head, return_index=True)
    return [int(s) for s in head[np.sort(first)]]


def build_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The plan as a JSON-ready dict (what ``--json`` prints)."""
    for name in ("nodes", "ranks_per_node", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.workers < 0 or args.samples < 0 or args.epoch < 0:
        raise ConfigError("--workers, --samples and --epoch must be >= 0")
    urls = [index_location(d) for d in args.datasets]
    entries = [parse_index(asyncio.run(read_index(u, timeout=args.timeout)), source=redact(u)) for u in urls]
    per_stream = [np.array([e.samples for e in stream], np.int64) for stream in entries]
    sizes = np.concatenate(per_stream)
    raw_bytes = np.array(
        [sum(raw.bytes for raw, _ in e.file_pairs()) for stream in entries for e in stream], np.int64
    )
    # The C default counts the nodes of the replicated world, as the dataset does.
    parallel = World.from_rank(args.nodes, args.ranks_per_node, 1, 0, 0).replicate(args.replication)
    spec = EpochSpec.build(
        per_stream,
        batch_size=args.batch_size,
        num_nodes=parallel.num_nodes,
        weights=_weights(args, len(urls)),
        epoch_size=args.epoch_size,
        num_canonical_nodes=args.num_canonical_nodes,
        shuffle=args.shuffle,
        shuffle_algo=args.shuffle_algo,
        shuffle_seed=args.seed,
        shuffle_block_size=args.shuffle_block_size,
        partition_algo=args.partition_algo,
        batching_method=args.batching_method,
        sampling_method=args.sampling_method,
        sampling_granularity=args.sampling_granularity,
        replication=args.replication,
    )
    first_shard = np.cumsum([0] + [len(s) for s in per_stream])
    num_ranks = args.nodes * args.ranks_per_node
    ranks = _ranks(args.ranks, num_ranks, args.ranks_per_node)
    plans = plan_ranks(spec, args.nodes, args.ranks_per_node, args.workers, args.epoch, ranks)
    by_rank = {p.rank: p for p in plans}
    rank_rows = []
    for plan in plans:
        spread = shuffle_spread(plan.shards)
        rank_rows.append(
            {
                "rank": plan.rank,
                "samples": len(plan.samples),
                "shards": len(np.unique(plan.shards)),
                "cache_bytes": cache_peak([plan.shards], raw_bytes),
                "spread": None if math.isnan(spread) else round(spread, 4),
                "per_stream": np.bincount(
                    np.searchsorted(first_shard, plan.shards, side="right") - 1, minlength=len(urls)
                ).tolist(),
                "first_samples": [int(s) for s in plan.samples[: args.samples]],
                "first_shards": _first_shards(plan, args.samples),
            }
        )
    node_rows = []
    for node in range(args.nodes):
        members = range(node * args.ranks_per_node, (node + 1) * args.ranks_per_node)
        if not all(r in by_rank for r in members):
            continue
        seqs = [by_rank[r].shards for r in members]
        read = np.unique(np.concatenate(seqs)) if seqs else np.zeros(0, np.int64)
        node_rows.append(
            {
                "node": node,
                "cache_bytes": cache_peak(seqs, raw_bytes),
                "shards": len(read),
                "bytes": int(raw_bytes[read].sum()),
            }
        )
    spreads = [r["spread"] for r in rank_rows if r["spread"] is not None]
    streams = [
        {
            "dataset": redact(url),
            "shards": len(per_stream[k]),
            "samples": int(per_stream[k].sum()),
            "choose": spec.choose_per_stream[k],
            "proportion": round(spec.proportion_per_stream[k], 6),
        }
        for k, url in enumerate(urls)
    ]
    return {
        "dataset": streams[0]["dataset"] if len(urls) == 1 else [s["dataset"] for s in streams],
        "streams": streams,
        "shards": len(sizes),
        "samples": int(sizes.sum()),
        "raw_bytes": int(raw_bytes.sum()),
        "settings": {
            "nodes": args.nodes,
            "ranks_per_node": args.ranks_per_node,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "shuffle": args.shuffle,
            "shuffle_algo": spec.shuffle_algo,
            "shuffle_block_size": spec.shuffle_block_size,
            "num_canonical_nodes": spec.num_canonical_nodes,
            "shuffle_seed": spec.shuffle_seed,
            "partition_algo": spec.partition_algo,
            "batching_method": spec.batching_method,
            "sampling_method": spec.sampling_method,
            "replication": spec.replication or 1,
            "epoch_size": spec.epoch_size,
            "epoch": args.epoch,
        },
        "ranks": rank_rows,
        "nodes": node_rows,
        "spread": round(float(np.mean(spreads)), 4) if spreads else None,
    }


def render(plan: dict[str, Any]) -> str:
    """The human-readable form of :func:`build_plan`'s result."""
    s = plan["settings"]
    shuffle = (
        f"{s['shuffle_algo']}, block {s['shuffle_block_size']:,}, seed {s['shuffle_seed']}"
        if s["shuffle"]
        else "off"
    )
    name = plan["dataset"] if isinstance(plan["dataset"], str) else f"{len(plan['streams'])} streams"
    lines = [
        f"dataset:   {name}: {plural(plan['shards'], 'shard')}, "
        f"{plural(plan['samples'], 'sample')}, {fmt_bytes(plan['raw_bytes'])} raw",
        f"job:       {s['nodes']} nodes x {s['ranks_per_node']} ranks x {s['workers']} workers, "
        f"batch {s['batch_size']}, canonical nodes {s['num_canonical_nodes']}, epoch {s['epoch']} "
        f"({s['epoch_size']:,} samples)",
        f"shuffle:   {shuffle}",
        "",
    ]
    if len(plan["streams"]) > 1:
        stream_rows = [
            [str(k), st["dataset"], f"{st['samples']:,}", f"{st['choose']:,}", f"{st['proportion']:.3f}"]
            for k, st in enumerate(plan["streams"])
        ]
        header = ["stream", "dataset", "samples", "per epoch", "proportion"]
        lines += [table(stream_rows, header=header), f"batching:  {s['batching_method']}", ""]
    rows = [
        [
            str(r["rank"]),
            f"{r['samples']:,}",
            f"{r['shards']:,}",
            fmt_bytes(r["cache_bytes"]),
            "-" if r["spread"] is None else f"{r['spread']:.2f}",
            "/".join(f"{n:,}" for n in r["per_stream"]),
            " ".join(map(str, r["first_samples"])),
            " ".join(map(str, r["first_shards"])),
        ]
        for r in plan["ranks"]
    ]
    header = ["rank", "samples", "shards", "cache", "spread", "per stream", "first samples", "their shards"]
    lines.append(table(rows, header=header))
    if plan["nodes"]:
        lines.append("")
        node_rows = [
            [str(n["node"]), fmt_bytes(n["cache_bytes"]), f"{n['shards']:,}", fmt_bytes(n["bytes"])]
            for n in plan["nodes"]
        ]
        lines.append(table(node_rows, header=["node", "cache", "shards read", "bytes read"]))
    lines.append("")
    lines.append(
        "cache: the raw bytes a rank (node) must hold so that no shard is downloaded twice; "
        "a smaller cache_limit re-downloads."
    )
    if plan["spread"] is not None:
        lines.append(
            f"shuffle spread: {plan['spread']:.2f} (mean over ranks; 1.0 = samples of a shard as spread "
            "out as in a uniform shuffle, near 0 = they come together)"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handle ``astreaming plan``."""
    plan = build_plan(args)
    print(json.dumps(plan, indent=2) if args.json else render(plan))
    return 0
