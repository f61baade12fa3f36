"""The fault matrix: every fault kind x rate on gs, s3 and http, one cold epoch each, on the real servers.

``python -m benchmarks fault-matrix`` (or ``python benchmarks/fault_matrix.py``) starts fake-gcs-server,
moto in server mode and a static HTTP server, writes one MDS dataset and stores it in all three, then for
every backend runs a fault-free epoch (``--baseline-runs`` times) and one epoch per cell: a fresh
:class:`~astreaming.testing.faultproxy.FaultProxy` in front of the store injecting one fault kind into
the given share of shard GETs (the index is left alone), a fresh cache directory, no DataLoader workers.

The dataset mixes small shards (downloaded whole) with a few large ones (downloaded as parallel byte
ranges once larger than two parts), so both download paths meet the faults.

A cell ends in one of two ways, and the script checks which:

- ``identical``: the epoch yielded exactly the ids of the fault-free run, in the same order, and every
  sample's bytes equal the bytes written (checked against the generator, not against astreaming);
- a typed error (an ``AstreamingError`` subclass): the samples yielded before it are a prefix of the
  fault-free run (no silent skip), and the failing object's retries ended within the bound
  ``download_timeout x attempts + the backoff sleeps`` (each at most ``min(cap, base·2^(n-1))``, or the
  server's ``Retry-After`` when longer). Two measures of that time are kept: astreaming's own (the "in
  X s" of its message) and the proxy's, from the failing object's first request to the moment the
  consumer saw the error (an upper bound: the consumer may reach the shard later than it failed).

Anything else (a wrong byte, a missing or extra sample, an untyped error, a bound exceeded, a hang past
``--cell-timeout``) is a failure: the script says so and exits 1.

Results: ``benchmarks/results/fault_matrix.json`` and ``fault_matrix.md`` (the table in the README).

    python -m benchmarks fault-matrix
    python -m benchmarks fault-matrix --backends s3 --kinds stall short --rates 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astreaming import MDSWriter, StreamingDataset
from astreaming.errors import AstreamingError
from astreaming.storage.retry import RetryPolicy
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "fault-matrix"
PREFIX = "ds"
BACKENDS = ("gs", "s3", "http")
RATES = (0.01, 0.1, 0.5)
RETRY_AFTER = 1.0
STALL_SECONDS = 60.0

#: kind -> (what the table calls it, FaultPlan arguments for a rate r)
KINDS: dict[str, tuple[str, Any]] = {
    "5xx": ("500/502/503/504", lambda r: {"error_rate": r, "error_statuses": (500, 502, 503, 504)}),
    "429": (
        f"429 with Retry-After: {RETRY_AFTER:g}",
        lambda r: {"error_rate": r, "error_statuses": (429,), "retry_after": RETRY_AFTER},
    ),
    "reset": ("connection reset mid-body", lambda r: {"reset_rate": r}),
    "truncate": ("truncated body (Content-Length kept, connection closed)", lambda r: {"truncate_rate": r}),
    "stall": (
        f"stall mid-body ({STALL_SECONDS:g} s)",
        lambda r: {"stall_rate": r, "stall_seconds": STALL_SECONDS},
    ),
    "short": ("short body (Content-Length lowered to match)", lambda r: {"short_rate": r}),
}


def blob(i: int, size: int) -> bytes:
    """Sample ``i``'s bytes: the oracle every yielded sample is checked against."""
    return random.Random(i).randbytes(size)


@dataclass(frozen=True)
class Layout:
    """The dataset: ``small`` samples of ``small_bytes`` (``per_shard`` to a shard), then ``large``
    samples of ``large_bytes``, one to a shard."""

    small: int
    small_bytes: int
    per_shard: int
    large: int
    large_bytes: int

    def size(self, i: int) -> int:
        return self.small_bytes if i < self.small else self.large_bytes

    @property
    def samples(self) -> int:
        return self.small + self.large


def write_dataset(root: Path, layout: Layout) -> Path:
    out = root / PREFIX
    limit = layout.per_shard * (layout.small_bytes + 64)
    with MDSWriter(out=str(out), columns={"id": "int", "blob": "bytes"}, size_limit=limit) as w:
        for i in range(layout.samples):
            w.write({"id": i, "blob": blob(i, layout.size(i))})
    return out


@dataclass
class Store:
    """One backend holding the dataset: its upstream URL, the remote a dataset is given when the proxy
    at ``proxy_url`` is in front, and the environment that points the client at the proxy."""

    name: str
    upstream: str

    def remote(self, proxy_url: str) -> str:
        if self.name == "gs":
            return f"gs://{BUCKET}/{PREFIX}"
        if self.name == "s3":
            return f"s3://{BUCKET}/{PREFIX}"
        return f"{proxy_url}/{PREFIX}"

    def env(self, proxy_url: str) -> dict[str, str]:
        if self.name == "gs":
            return {"STORAGE_EMULATOR_HOST": proxy_url}
        if self.name == "s3":
            return {
                **MotoS3Server.credentials,
                "S3_ENDPOINT_URL": proxy_url,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        return {}


@contextmanager
def stores(data: Path, names: list[str]) -> Iterator[dict[str, Store]]:
    """Start the servers of ``names`` and store the dataset directory ``data`` in each."""
    files = sorted(p for p in data.iterdir() if p.is_file())
    with ExitStack() as stack:
        out: dict[str, Store] = {}
        if "gs" in names:
            gcs = stack.enter_context(FakeGCSServer())
            gcs.create_bucket(BUCKET)
            for p in files:
                gcs.put_object(BUCKET, f"{PREFIX}/{p.name}", p.read_bytes())
            out["gs"] = Store("gs", gcs.url)
        if "s3" in names:
            s3 = stack.enter_context(MotoS3Server())
            s3.create_bucket(BUCKET)
            client = s3.client()  # one client for every upload (put_object makes one per call)
            try:
                for p in files:
                    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{p.name}", Body=p.read_bytes())
            finally:
                client.close()
            out["s3"] = Store("s3", s3.url)
        if "http" in names:
            http = stack.enter_context(StaticHTTPServer(data.parent))
            out["http"] = Store("http", http.url)
        yield out


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RequestLog:
    """The proxy's ``match``: records when each shard GET arrived and lets only those be faulted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}

    def __call__(self, request: Any) -> bool:
        if request.method != "GET" or "shard." not in request.path:
            return False
        name = request.path.rsplit("/", 1)[-1]
        with self.lock:
            self.times.setdefault(name, []).append(time.monotonic())
        return True


@dataclass
class Epoch:
    """What one epoch yielded and how it ended."""

    ids: list[int] = field(default_factory=list)
    wrong_bytes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    error: BaseException | None = None
    error_at: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


def run_epoch(remote: str, local: Path, layout: Layout, args: argparse.Namespace) -> Epoch:
    epoch = Epoch()
    began = time.monotonic()
    ds = StreamingDataset(
        remote=remote,
        local=str(local),
        batch_size=args.batch_size,
        download_retry=args.download_retry,
        download_timeout=args.download_timeout,
    )
    try:
        for sample in ds:
            i = int(sample["id"])
            epoch.ids.append(i)
            if not 0 <= i < layout.samples or sample["blob"] != blob(i, layout.size(i)):
                epoch.wrong_bytes.append(i)
    except Exception as exc:  # classified by the caller: typed or not
        epoch.error = exc
        epoch.error_at = time.monotonic()
    finally:
        epoch.seconds = time.monotonic() - began
        epoch.stats = dict(ds.stats())
        ds.close()
    return epoch


def retry_bound(args: argparse.Namespace, retry_after: float | None) -> float:
    """The most one object's retries may take: ``download_timeout x attempts`` plus every backoff sleep
    at its upper bound (or the server's Retry-After where that is longer)."""
    policy = RetryPolicy.from_download_retry(args.download_retry, args.download_timeout)
    sleeps = 0.0
    for n in range(1, policy.attempts):
        backoff = min(policy.cap, policy.base * 2.0 ** (n - 1))
        sleeps += max(backoff, min(retry_after or 0.0, policy.max_retry_after))
    assert policy.timeout is not None
    return policy.timeout * policy.attempts + sleeps


_REPORTED = re.compile(r"(\d+) attempt\(s\) in (\d+\.\d+) s")
_SHARD = re.compile(r"shard\.\d+\.mds")


def classify(
    epoch: Epoch, baseline: list[int], log: RequestLog, args: argparse.Namespace, plan: FaultPlan
) -> dict[str, Any]:
    """The outcome of a cell, and whether it is one of the two allowed ones."""
    out: dict[str, Any] = {"samples": len(epoch.ids), "wrong_bytes": epoch.wrong_bytes[:10]}
    problems: list[str] = []
    if epoch.wrong_bytes:
        problems.append(f"{len(epoch.wrong_bytes)} samples with wrong bytes")
    if epoch.error is None:
        out["outcome"] = "identical"
        if epoch.ids != baseline:
            problems.append(
                f"ids differ from the fault-free run ({len(epoch.ids)} vs {len(baseline)} samples)"
            )
    else:
        err = epoch.error
        out["outcome"] = type(err).__name__
        out["message"] = str(err)[:600]
        if not isinstance(err, AstreamingError):
            problems.append(f"untyped error {type(err).__name__}: {err}")
        if epoch.ids != baseline[: len(epoch.ids)]:
            problems.append("the samples before the error are not a prefix of the fault-free run")
        bound = retry_bound(args, plan.retry_after)
        out["bound_seconds"] = round(bound, 2)
        match = _REPORTED.search(str(err))
        if match:
            out["attempts"] = int(match.group(1))
            out["reported_seconds"] = float(match.group(2))
            if out["reported_seconds"] > bound:
                problems.append(f"gave up after {out['reported_seconds']} s, over the bound {bound:.2f} s")
        named = _SHARD.search(getattr(err, "url", None) or str(err))  # a FormatError has no url
        name = named.group(0) if named else ""
        with log.lock:
            times = list(log.times.get(name, ()))
        if times:
            out["failing_object"] = name
            out["requests_of_failing_object"] = len(times)
            out["first_request_to_error_seconds"] = round(epoch.error_at - times[0], 2)
        if not match and "first_request_to_error_seconds" not in out:
            problems.append("cannot tell how long the failing object was tried")
    out["problems"] = problems
    return out


def cell_seed(seed: int, kind: str) -> int:
    return 100 * seed + list(KINDS).index(kind)


def completion_chance(rate: float, attempts: int, requests: int) -> float:
    """The chance that no request of an epoch fails ``attempts`` times in a row, faults drawn independently
    at ``rate`` (for a stall, if every stall outlasts ``download_timeout``)."""
    return float((1.0 - rate**attempts) ** requests)


def run_cell(
    seed: int,
    store: Store,
    kind: str,
    rate: float,
    layout: Layout,
    baseline: list[int],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    log = RequestLog()
    # One seed per kind: the kinds fall on different requests (with one seed, 5xx and 429 would fail
    # the very same requests, as would reset, truncate, stall and short). Within a kind the rates nest:
    # a request faulted at 1% is faulted at 10% and 50% too.
    plan = FaultPlan(**KINDS[kind][1](rate), seed=cell_seed(seed, kind), per_key=True, match=log)
    with ThreadedFaultProxy(store.upstream, plan) as proxy, environment(store.env(proxy.url)):
        local = Path(tempfile.mkdtemp(dir=work, prefix=f"{store.name}-{kind}-"))
        epoch = run_epoch(store.remote(proxy.url), local, layout, args)
        injected = proxy.stats
    result = classify(epoch, baseline, log, args, plan)
    result.update(
        seed=seed,
        backend=store.name,
        kind=kind,
        rate=rate,
        seconds=round(epoch.seconds, 3),
        retries=epoch.stats.get("retries", 0),
        faults=injected.faults,
        shard_requests=sum(len(v) for v in log.times.values()),
    )
    return result


def run_baseline(store: Store, layout: Layout, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Fault-free epochs through the same proxy (no faults): the ids to match and the time to compare."""
    times: list[float] = []
    ids: list[int] | None = None
    requests: list[int] = []
    for run in range(args.baseline_runs):
        log = RequestLog()
        with (
            ThreadedFaultProxy(store.upstream, FaultPlan(match=log)) as proxy,
            environment(store.env(proxy.url)),
        ):
            local = Path(tempfile.mkdtemp(dir=work, prefix=f"{store.name}-clean-"))
            epoch = run_epoch(store.remote(proxy.url), local, layout, args)
        if epoch.error is not None or epoch.wrong_bytes or len(epoch.ids) != layout.samples:
            raise RuntimeError(
                f"{store.name}: the fault-free epoch failed: {epoch.error!r}, {epoch.wrong_bytes[:5]}"
            )
        if sorted(epoch.ids) != list(range(layout.samples)):
            raise RuntimeError(f"{store.name}: the fault-free epoch did not yield every sample once")
        if ids is not None and epoch.ids != ids:
            raise RuntimeError(f"{store.name}: two fault-free epochs yielded different orders (run {run})")
        ids = epoch.ids
        times.append(epoch.seconds)
        requests.append(sum(len(v) for v in log.times.values()))
    assert ids is not None
    return {
        "ids": ids,
        "seconds": times,
        "median_seconds": statistics.median(times),
        "shard_requests": requests,
    }


def cell_text(cell: dict[str, Any]) -> str:
    sign = "+" if cell["extra_seconds"] >= 0 else "-"
    extra = f"{sign}{abs(cell['extra_seconds']):.1f} s"
    if cell["outcome"] == "identical":
        text = f"identical, {cell['faults']} faults, {cell['retries']} retries, {extra}"
    else:
        took = cell.get("reported_seconds")
        text = f"`{cell['outcome']}`" + (
            f" after {took:.1f} s (bound {cell['bound_seconds']:.1f} s)" if took else ""
        )
        text += f", {cell['faults']} faults, {cell['retries']} retries, {cell['samples']} samples first"
    if cell["problems"]:
        text = "**FAILED: " + "; ".join(cell["problems"]) + "** " + text
    return text


def cells_text(cells: list[dict[str, Any]]) -> str:
    """One table cell: the outcomes of a backend x kind x rate over every seed."""
    if not cells:
        return ""
    if len(cells) == 1:
        return cell_text(cells[0])
    parts: list[str] = []
    failed = [c for c in cells if c["problems"]]
    if failed:
        parts.append("**FAILED: " + "; ".join(p for c in failed for p in c["problems"]) + "**")
    done = [c for c in cells if c["outcome"] == "identical"]
    if done:
        extra = statistics.median(c["extra_seconds"] for c in done)
        parts.append(
            f"identical {len(done)}/{len(cells)} ({'/'.join(str(c['retries']) for c in done)} retries, "
            f"{'+' if extra >= 0 else '-'}{abs(extra):.1f} s)"
        )
    errors = [c for c in cells if c["outcome"] != "identical"]
    for name in sorted({c["outcome"] for c in errors}):
        same = [c for c in errors if c["outcome"] == name]
        took = [c["reported_seconds"] for c in same if "reported_seconds" in c]
        text = f"`{name}` {len(same)}/{len(cells)}"
        if took:
            span = (
                f"{min(took):.1f}"
                if f"{min(took):.1f}" == f"{max(took):.1f}"
                else f"{min(took):.1f}-{max(took):.1f}"
            )
            text += f" after {span} s (bound {same[0]['bound_seconds']:.1f} s)"
        parts.append(text)
    return "; ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    names = [b for b in BACKENDS if b in result["baselines"]]
    attempts = 1 + cfg["download_retry"]
    requests = min(min(result["baselines"][b].get("shard_requests", [0])) for b in names)
    lines = [
        f"| fault (share of shard GETs) | rate | chance an epoch completes | {' | '.join(names)} |",
        "|---|---|---|" + "---|" * len(names),
    ]
    cells: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for c in result["cells"]:
        cells.setdefault((c["backend"], c["kind"], c["rate"]), []).append(c)
    for kind in cfg["kinds"]:
        for rate in cfg["rates"]:
            row = [cells_text(cells.get((b, kind, rate), [])) for b in names]
            chance = completion_chance(rate, attempts, requests) if requests else float("nan")
            lines.append(f"| {KINDS[kind][0]} | {rate:.0%} | {chance:.4g} | {' | '.join(row)} |")
    base = ", ".join(f"{b} {result['baselines'][b]['median_seconds']:.2f} s" for b in names)
    lines += ["", f"Fault-free epoch (median of {cfg['baseline_runs']}): {base}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks fault-matrix", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES))
    parser.add_argument("--small-samples", type=int, default=2000)
    parser.add_argument("--small-bytes", type=int, default=1600)
    parser.add_argument("--per-shard", type=int, default=10)
    parser.add_argument("--large-samples", type=int, default=3)
    parser.add_argument("--large-bytes", type=int, default=9 << 20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--download-retry", type=int, default=2, help="mosaic's default: 3 attempts")
    parser.add_argument("--download-timeout", type=float, default=2.0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="one epoch per seed and cell")
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--verbose", action="store_true", help="show astreaming's retry warnings")
    parser.add_argument("--table", metavar="JSON", help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())), end="")
        return 0
    if not args.verbose:
        logging.getLogger("astreaming").setLevel(logging.ERROR)
    layout = Layout(
        args.small_samples, args.small_bytes, args.per_shard, args.large_samples, args.large_bytes
    )
    started = time.time()
    result: dict[str, Any] = {
        "config": {
            "kinds": args.kinds,
            "rates": args.rates,
            "layout": layout.__dict__,
            "batch_size": args.batch_size,
            "download_retry": args.download_retry,
            "download_timeout": args.download_timeout,
            "seeds": args.seeds,
            "baseline_runs": args.baseline_runs,
            "retry_after": RETRY_AFTER,
            "stall_seconds": STALL_SECONDS,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "baselines": {},
        "cells": [],
    }
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as tmp:
        work = Path(tmp)
        data = write_dataset(work / "served", layout)
        shards = len(list(data.glob("shard.*")))
        result["config"]["shards"] = shards
        print(f"dataset: {layout.samples} samples in {shards} shards", flush=True)
        print(f"written in {time.time() - started:.0f} s", flush=True)
        with stores(data, args.backends) as by_name:
            print(f"stored in {time.time() - started:.0f} s", flush=True)
            for name in args.backends:
                store = by_name[name]
                base = run_baseline(store, layout, args, work)
                result["baselines"][name] = {k: v for k, v in base.items() if k != "ids"}
                print(f"{name}: fault-free epoch {base['seconds']}", flush=True)
                for kind in args.kinds:
                    for rate in args.rates:
                        for seed in args.seeds:
                            load = os.getloadavg()[0]
                            cell = run_cell(seed, store, kind, rate, layout, base["ids"], args, work)
                            cell["extra_seconds"] = round(cell["seconds"] - base["median_seconds"], 3)
                            cell["load"] = round(load, 1)
                            result["cells"].append(cell)
                            print(
                                f"{name:5} {kind:9} {rate:5.0%} seed {seed}  {cell_text(cell)}  "
                                f"[{time.time() - started:.0f} s]",
                                flush=True,
                            )
    result["minutes"] = round((time.time() - started) / 60, 1)
    result["failed"] = sum(1 for c in result["cells"] if c["problems"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fault_matrix.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (out / "fault_matrix.md").write_text(table)
    print(table)
    print(f"{len(result['cells'])} cells, {result['failed']} failed, {result['minutes']} min")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
