"""Diagnostics for ``cache_limit.py --trace DIR``: log every reservation and eviction of the node budget.

Each process (DataLoader workers included: they inherit the patch through fork) appends JSON lines to
``DIR/<pid>.jsonl``: ``{"t", "ev": "reserve", "shard", "distance", "granted"}`` for each reservation
attempt and ``{"t", "ev": "evict", "key", "score", "for", "distance"}`` for each shard it deleted, with the
score (plan positions to its next use, ``inf``: nobody needs it soon) that made it the victim; and
``{"t", "ev": "plan-publish" | "plan-discard", "key"}`` for each plan artefact computed or discarded. Reads
private parts of ``astreaming.cache.budget``: a measuring aid, not an interface.

    python benchmarks/cache_limit.py --libs astreaming --skip-matrix --trace /tmp/trace
    python benchmarks/_trace.py /tmp/trace          # summary: downloads per shard, victims' scores
"""

from __future__ import annotations

import collections
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def install(directory: str) -> None:
    """Wrap ``NodeBudget.try_reserve`` and ``NodeBudget._make_room`` to log into ``directory``.

    ``$ASTREAMING_BENCH_PUBLISH_EVERY`` (seconds), if set, replaces the runtime's interval between two
    publications of this process's position and upcoming needs: an experiment on how stale positions
    mislead the other processes' evictions.
    """
    from astreaming.cache.budget import NodeBudget

    if os.environ.get("ASTREAMING_BENCH_PUBLISH_EVERY"):
        import astreaming.engine.runtime as runtime

        runtime._PUBLISH_EVERY = float(os.environ["ASTREAMING_BENCH_PUBLISH_EVERY"])  # type: ignore[attr-defined]

    def log(record: dict[str, Any]) -> None:
        record["t"] = time.time()
        record["label"] = os.environ.get("ASTREAMING_BENCH_LABEL", "")  # job-rank in the soak
        with open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    try_reserve = NodeBudget.try_reserve
    make_room = NodeBudget._make_room
    evict = NodeBudget._evict
    context: dict[str, Any] = {}

    def traced_reserve(self: Any, shard: int, nbytes: int, *, distance: float) -> int | None:
        context.update(shard=shard, distance=distance)
        granted = try_reserve(self, shard, nbytes, distance=distance)
        log({"ev": "reserve", "shard": shard, "distance": _num(distance), "granted": granted})
        return granted

    def traced_make_room(self: Any, conns: Any, usage: int, nbytes: int, distance: float, **kw: Any) -> int:
        context["scores"] = {(r.root, r.key): s for s, r in self._rank(conns, kw["exclude"])}
        return make_room(self, conns, usage, nbytes, distance, **kw)

    def traced_evict(self: Any, conns: Any, row: Any) -> bool:
        done = evict(self, conns, row)
        if done:
            score = context.get("scores", {}).get((row.root, row.key), math.nan)
            log(
                {
                    "ev": "evict",
                    "key": row.key,
                    "score": _num(score),
                    "for": context.get("shard"),
                    "distance": _num(context.get("distance", math.nan)),
                }
            )
        return done

    NodeBudget.try_reserve = traced_reserve  # type: ignore[method-assign]
    NodeBudget._make_room = traced_make_room  # type: ignore[method-assign]
    NodeBudget._evict = traced_evict  # type: ignore[method-assign]
    _trace_plans(log)


def _trace_plans(log: Any) -> None:
    """Log each plan artefact a process computes and publishes (``plan-publish``) and each discard that
    removed one (``plan-discard``): how often the node computes an epoch's shuffle data again."""
    from astreaming.cache import plans

    publish, remove = plans._publish, plans._remove

    def traced_publish(final: Path, arrays: Any) -> None:
        publish(final, arrays)
        log({"ev": "plan-publish", "key": final.name})

    def traced_remove(final: Path) -> None:
        existed = final.exists()
        remove(final)
        if existed:
            log({"ev": "plan-discard", "key": final.name})

    plans._publish = traced_publish  # type: ignore[attr-defined]
    plans._remove = traced_remove  # type: ignore[attr-defined]
    widen = float(os.environ.get("ASTREAMING_BENCH_WIDEN_PLAN_LOAD", "0"))
    if widen > 0:
        _widen_listings(widen, log)


def _widen_listings(seconds: float, log: Any) -> None:
    """``$ASTREAMING_BENCH_WIDEN_PLAN_LOAD`` (seconds): a process listing a plan artefact's directory
    waits that long between opening it and reading its entries, as a reader preempted there on a loaded
    machine does (issue 8's race with another process's discard, widened). Logs ``plan-listing-raced``
    when the directory lost its name meanwhile."""
    listdir = os.listdir

    def widened(path: Any = ".") -> list[str]:
        fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
            if "astreaming-plans" not in where:
                return listdir(fd)
            time.sleep(seconds)
            names = listdir(fd)
            if not os.path.exists(where) or not os.path.samestat(os.fstat(fd), os.stat(where)):
                log({"ev": "plan-listing-raced", "key": os.path.basename(where), "names": len(names)})
            return names
        finally:
            if fd is not path:
                os.close(fd)

    os.listdir = widened  # type: ignore[assignment]


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def summarise(directory: str) -> dict[str, Any]:
    """Downloads per shard, and the victims' scores (how soon someone needed what was evicted)."""
    events = []
    for path in Path(directory).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            events.append({**json.loads(line), "pid": int(path.stem)})
    events.sort(key=lambda e: e["t"])
    downloads = collections.Counter(e["shard"] for e in events if e["ev"] == "reserve" and e["granted"])
    evictions = [e for e in events if e["ev"] == "evict"]
    scores = collections.Counter(
        "inf" if e["score"] == "inf" else f"<{_bucket(float(e['score']))}" for e in evictions
    )
    for_consumer = sum(1 for e in evictions if e["distance"] == 0)
    refused = sum(1 for e in events if e["ev"] == "reserve" and e["granted"] is None)
    published = collections.Counter(e["key"] for e in events if e["ev"] == "plan-publish")
    return {
        "processes": len({e["pid"] for e in events}),
        "downloads": sum(downloads.values()),
        "downloads_per_shard": dict(sorted(collections.Counter(downloads.values()).items())),
        "evictions": len(evictions),
        "evictions_for_the_consumer": for_consumer,
        "victim_score_buckets": dict(sorted(scores.items())),
        "refused_lookaheads": refused,
        # Plan artefacts computed, per artefact: 1 is the design (once per node); more were computed
        # again after a discard.
        "plan_publishes": sum(published.values()),
        "plan_artefacts": len(published),
        "plan_publishes_per_artefact": dict(sorted(collections.Counter(published.values()).items())),
        "plan_discards": sum(1 for e in events if e["ev"] == "plan-discard"),
        # With $ASTREAMING_BENCH_WIDEN_PLAN_LOAD: listings a discard overtook (and how many read nothing).
        "plan_listings_raced": sum(1 for e in events if e["ev"] == "plan-listing-raced"),
        "plan_listings_raced_empty": sum(
            1 for e in events if e["ev"] == "plan-listing-raced" and e["names"] == 0
        ),
    }


def _bucket(score: float) -> int:
    for edge in (1, 64, 256, 1024, 4096):
        if score < edge:
            return edge
    return 10**9


if __name__ == "__main__":
    print(json.dumps(summarise(sys.argv[1]), indent=2))
