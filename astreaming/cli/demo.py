"""``astreaming demo``: the whole pipeline end to end on this machine, measured and verified.

1. write a synthetic MDS dataset (zstd, sha1 + xxh64) with ``MDSWriter`` into a temporary directory;
2. serve it over HTTP on 127.0.0.1 behind a fault proxy that models a link (latency, bandwidth);
3. stream one cold epoch (``shuffle=True``) from ``http://...`` into a fresh cache, checking every sample,
   and compare the time taken with the floor ``bytes / bandwidth``;
4. a warm epoch from the cache (no shard may cross the link, only the check that the index is unchanged);
5. resume: checkpoint after some batches, resume in a new dataset, the tail must equal the epoch's.

Temporary directories, servers and loader workers are cleaned up on every exit path, Ctrl-C and SIGTERM
included. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np

from astreaming.cli._fmt import fmt_bytes, fmt_rate, fmt_seconds, plural
from astreaming.cli.demo_data import DemoCheckError, SampleChecker, WrittenDataset, write_dataset
from astreaming.cli.demo_phases import DatasetFactory, EpochRun, run_epoch, run_resume
from astreaming.errors import ConfigError
from astreaming.order import hints

__all__ = ["DemoConfig", "register", "run"]

MB = 1_000_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand to ``sub``."""
    p = sub.add_parser(
        "demo",
        help="write, serve and stream a synthetic dataset over a simulated link, verifying every sample",
        # The docstring is reStructuredText; --help shows it as plain text.
        description=__doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--samples", type=int, default=40_000, metavar="N", help="samples (default 40000)")
    p.add_argument(
        "--sample-bytes", type=int, default=4096, metavar="B", help="payload bytes per sample (default 4096)"
    )
    p.add_argument(
        "--shard-bytes", type=int, default=4_000_000, metavar="B", help="shard size limit (default 4 MB)"
    )
    p.add_argument("--latency", type=float, default=0.02, metavar="S", help="link latency (default 0.02 s)")
    p.add_argument(
        "--bandwidth", type=float, default=50.0, metavar="MBps", help="link MB/s, 0 = no cap (default 50)"
    )
    p.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="fraction of requests the link answers with 500/503/429 (default 0)",
    )
    p.add_argument(
        "--reset-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="fraction of responses whose connection is reset mid-body (default 0)",
    )
    p.add_argument("--workers", type=int, default=0, metavar="W", help="DataLoader workers (default 0)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="batch size (default 64)")
    p.add_argument("--seed", type=int, default=9176, help="shuffle seed (default 9176)")
    p.add_argument("--verbose", action="store_true", help="log every retried download (the injected faults)")
    p.add_argument(
        "--keep",
        metavar="DIR",
        help="work in DIR (must be empty or new) and keep the dataset and cache there",
    )
    p.set_defaults(handler=run)


@dataclass(frozen=True)
class DemoConfig:
    """The validated arguments of ``astreaming demo`` (see ``--help``)."""

    samples: int
    sample_bytes: int
    shard_bytes: int
    latency: float
    bandwidth: float  # bytes per second; 0 = no cap
    error_rate: float
    reset_rate: float
    workers: int
    batch_size: int
    seed: int
    keep: Path | None
    verbose: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoConfig:
        """Validate the parsed arguments.

        Raises:
            ConfigError: An argument is out of range (the message names it).
        """
        for name, value, low in (
            ("--samples", args.samples, 1),
            ("--sample-bytes", args.sample_bytes, 1),
            ("--shard-bytes", args.shard_bytes, 1),
            ("--workers", args.workers, 0),
            ("--batch-size", args.batch_size, 1),
        ):
            if value < low:
                raise ConfigError(f"{name} must be >= {low}, got {value}")
        if not 0 <= args.latency < 60:
            raise ConfigError(f"--latency must be in [0, 60) seconds, got {args.latency}")
        if not args.bandwidth >= 0:
            raise ConfigError(f"--bandwidth must be >= 0 MB/s, got {args.bandwidth}")
        for name, rate in (("--error-rate", args.error_rate), ("--reset-rate", args.reset_rate)):
            if not 0 <= rate <= 0.5:
                raise ConfigError(f"{name} must be in [0, 0.5], got {rate}")
        return cls(
            samples=args.samples,
            sample_bytes=args.sample_bytes,
            shard_bytes=args.shard_bytes,
            latency=args.latency,
            bandwidth=args.bandwidth * MB,
            error_rate=args.error_rate,
            reset_rate=args.reset_rate,
            workers=args.workers,
            batch_size=args.batch_size,
            seed=args.seed,
            keep=None if args.keep is None else Path(args.keep),
            verbose=args.verbose,
        )

    def link(self) -> str:
        """The simulated link in words."""
        cap = "no bandwidth cap" if not self.bandwidth else f"{self.bandwidth / MB:g} MB/s"
        text = f"{self.latency * 1000:g} ms latency, {cap}"
        if self.faulty:
            text += f", {self.error_rate:.0%} error responses, {self.reset_rate:.0%} resets"
        return text

    @property
    def faulty(self) -> bool:
        """Whether the link injects failures."""
        return bool(self.error_rate or self.reset_rate)

    @property
    def download_retry(self) -> int:
        """Retries per download: mosaic's default, or enough to ride out the injected failures."""
        # With failure rate r per attempt, a download fails for good with probability ~r**(retries+1):
        # 0.5**11 is 1 in 2000 per shard, 0.1**11 negligible.
        return 10 if self.faulty else 2


class _Reporter:
    """Prints the demo's progress, flushed line by line (the demo is watched live)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def item(self, label: str, text: str) -> None:
        self.line(f"      {label:<20} {text}")


def inside_fork(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside ``os.fork`` as multiprocessing calls it (an at-fork hook, or the
    caller around it): an exception raised there is swallowed by the fork as unraisable."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_launch" and code.co_filename.endswith("popen_fork.py"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt meanwhile, so ``kill`` cleans up exactly like Ctrl-C; both
    wait until a fork in progress is over (see :func:`inside_fork`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if inside_fork(frame):
            # Raised inside an at-fork hook (logging's lock, while torch forks a worker), the exception
            # would be printed as "Exception ignored" and lost, and the demo would run on: deliver the
            # signal again once the fork is over.
            threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()
            return
        raise KeyboardInterrupt

    # SIGINT only where Python's own handler has it (started in the background, it stays ignored).
    caught = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        caught.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, interrupt) for sig in caught}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _log_level(name: str, level: int) -> Iterator[None]:
    """Set logger ``name``'s level meanwhile (forked DataLoader workers inherit it)."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _remove_tree(path: Path) -> None:
    # A worker or download may still be finishing a file while we delete: retry a few times.
    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)
    shutil.rmtree(path)  # raises, naming what could not be removed


def _workdir(cfg: DemoConfig, stack: contextlib.ExitStack) -> Path:
    if cfg.keep is None:
        work = Path(tempfile.mkdtemp(prefix="astreaming-demo-"))
        stack.callback(_remove_tree, work)
        return work
    if cfg.keep.exists() and (not cfg.keep.is_dir() or any(cfg.keep.iterdir())):
        # A previous run's cache would make the "cold" epoch warm; never delete the user's files either.
        raise ConfigError(f"--keep {cfg.keep}: must be an empty directory or a new path")
    cfg.keep.mkdir(parents=True, exist_ok=True)
    return cfg.keep


def _first_bytes(data: WrittenDataset, ids: list[int]) -> int:
    """Stored bytes of the distinct shards holding ``ids``: what must arrive before they can be read."""
    ends = np.cumsum([e.samples for e in data.entries])
    shards = np.unique(np.searchsorted(ends, np.asarray(ids, dtype=np.int64), side="right"))
    return sum(f.bytes for s in shards.tolist() for f in data.entries[s].fetch_files())


def _stats_text(stats: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())


def _cold_epoch(
    cfg: DemoConfig, out: _Reporter, factory: DatasetFactory, data: WrittenDataset, proxy: Any
) -> tuple[Any, EpochRun]:
    out.line(
        f"[3/5] cold epoch: shuffle=True, batch_size={cfg.batch_size}, workers={cfg.workers}, "
        "validate_hash=xxh64"
    )
    start = time.perf_counter()
    ds = factory.dataset()
    index_seconds = time.perf_counter() - start
    run = run_epoch(factory.samples(ds), SampleChecker(cfg.samples, cfg.sample_bytes), start)
    wire = data.stored_bytes + data.index_bytes
    first, epoch = fmt_seconds(run.first_sample), fmt_seconds(run.seconds)
    if cfg.bandwidth:
        # A loader with workers hands over whole batches: the first one needs every shard it draws from.
        head = run.order[: cfg.batch_size if cfg.workers else 1]
        first_floor = 2 * cfg.latency + (data.index_bytes + _first_bytes(data, head)) / cfg.bandwidth
        floor = wire / cfg.bandwidth
        needs = f"its {len(head)} samples' shards" if cfg.workers else "first shard"
        first += f"  (floor {fmt_seconds(first_floor)}: 2 round trips + index + {needs})"
        epoch += f"  = {run.seconds / floor:.2f} x floor ({fmt_bytes(wire)} / {fmt_bytes(cfg.bandwidth)}/s"
        epoch += f" = {fmt_seconds(floor)})"
    out.item("index loaded", fmt_seconds(index_seconds))
    # With workers the first item out of the loader is a whole batch.
    out.item("time to first " + ("batch" if cfg.workers else "sample"), first)
    out.item("epoch", epoch)
    out.item("throughput", f"{fmt_rate(run.samples, run.seconds)}, {fmt_bytes(wire / run.seconds)}/s")
    out.item(
        "verified", f"{run.samples:,}/{cfg.samples:,} samples, each id once, payloads and checksums intact"
    )
    link = proxy.statistics()
    faults = f", {link.errors} error responses and {link.resets} resets injected" if cfg.faulty else ""
    out.item("link", f"{link.requests} requests, {fmt_bytes(link.bytes_sent)} sent{faults}")
    if cfg.workers:
        out.item("ds.stats()", f"(counted in the {cfg.workers} worker processes; see the link line)")
    else:
        out.item("ds.stats()", _stats_text(ds.stats()))
    return ds, run


def _warm_epoch(cfg: DemoConfig, out: _Reporter, factory: DatasetFactory, ds: Any, proxy: Any) -> None:
    before = proxy.statistics()
    warm = run_epoch(factory.samples(ds), SampleChecker(cfg.samples, cfg.sample_bytes))
    after = proxy.statistics()
    downloaded = after.bytes_sent - before.bytes_sent
    asked = after.requests - before.requests
    # The history's last ``asked`` events are this epoch's ("METHOD path range"): each later epoch checks
    # that index.json did not change, and nothing else may cross the link.
    events = proxy.history[-asked:] if asked else []
    shards = [e.key for e in events if not e.key.split(" ")[1].endswith("/index.json")]
    out.line(
        f"[4/5] warm epoch (from the cache): {fmt_seconds(warm.seconds)}, "
        f"{fmt_rate(warm.samples, warm.seconds)}, {len(shards)} shard requests "
        f"({fmt_bytes(downloaded)} over the link: the check that index.json did not change); verified"
    )
    if shards:
        raise DemoCheckError(
            f"the warm epoch asked the link for {len(shards)} shard files ({shards[0]}, ...); "
            "the cache should serve them all"
        )


def _resume(cfg: DemoConfig, out: _Reporter, factory: DatasetFactory, cold: EpochRun) -> None:
    total = -(-cfg.samples // cfg.batch_size)
    if total < 2:
        out.line("[5/5] resume: skipped (the epoch is a single batch)")
        return
    resume = run_resume(factory, cold.order, max(1, total // 3), cfg.samples, cfg.sample_bytes)
    out.line(
        f"[5/5] resume: loader.state_dict() after {plural(resume.batches, 'batch', 'es')} of a new dataset:"
    )
    # The shuffle draws the checkpoint carries are a long base64 string: shown by their size.
    shown = {
        k: f"<{len(v):,} characters: the epoch's shuffle draws>" if k == hints.KEY else v
        for k, v in resume.checkpoint.items()
    }
    out.item("checkpoint", str(shown))
    out.item("first part", f"{resume.head_samples:,} samples equal the cold epoch's head")
    out.item(
        "resumed",
        f"another new dataset + load_state_dict: first batch in {fmt_seconds(resume.seconds)}, "
        f"its {resume.resumed_samples:,} samples equal the cold epoch's tail",
    )


def _next_steps(kept: Path | None) -> str:
    """The closing line: what to try next (on the kept dataset when there is one)."""
    if kept is not None:
        return (
            f"next: astreaming verify {kept}; astreaming plan {kept} --nodes 2 --ranks-per-node 8; "
            "or convert your own data: astreaming convert SRC OUT (README: Quick start)"
        )
    return (
        "next: convert your own data with astreaming convert SRC OUT, check it with astreaming verify OUT, "
        "plan a job with astreaming plan OUT (README: Quick start)"
    )


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Handle ``astreaming demo``; returns 0 when every check passed.

    Raises:
        ConfigError: Bad arguments.
        DemoCheckError: A sample was wrong, missing or repeated, or the resumed run diverged.
        KeyboardInterrupt: Ctrl-C or SIGTERM, after cleaning up.
    """
    # aiohttp and the servers are imported only when a demo runs, not for ``astreaming --help``.
    from astreaming.testing.faults import FaultPlan
    from astreaming.testing.servers import StaticHTTPServer
    from astreaming.testing.threadedproxy import ThreadedFaultProxy

    cfg = DemoConfig.from_args(args)
    out = _Reporter(stream or sys.stdout)
    # Import torch and the engine now (about a second), not inside the measured time to first sample.
    import astreaming.dataloader  # noqa: F401

    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_as_interrupt())
        if not cfg.verbose:
            # Retries of injected faults are expected here and counted in the report; keep real errors.
            stack.enter_context(_log_level("astreaming", logging.ERROR))
        work = _workdir(cfg, stack)
        out.line(
            f"astreaming demo: {cfg.samples:,} samples x {cfg.sample_bytes:,} B over a simulated link "
            f"({cfg.link()})"
        )
        out.line(f"working directory: {work}" + (" (kept)" if cfg.keep else " (removed on exit)"))

        data = write_dataset(
            work / "dataset",
            samples=cfg.samples,
            sample_bytes=cfg.sample_bytes,
            shard_bytes=cfg.shard_bytes,
            seed=cfg.seed,
        )
        out.line(
            f"[1/5] wrote {plural(len(data.entries), 'MDS shard')} with MDSWriter "
            f"in {fmt_seconds(data.seconds)}: "
            f"{fmt_bytes(data.raw_bytes)} raw, {fmt_bytes(data.stored_bytes)} zstd, sha1 + xxh64 hashes"
        )

        server = stack.enter_context(StaticHTTPServer(work / "dataset"))
        plan = FaultPlan(
            latency=cfg.latency,
            bandwidth=cfg.bandwidth or None,
            error_rate=cfg.error_rate,
            reset_rate=cfg.reset_rate,
            error_statuses=(500, 503, 429),
        )
        proxy = stack.enter_context(ThreadedFaultProxy(server.url, plan))
        out.line(f"[2/5] serving {server.url} through the link proxy {proxy.url}")

        factory = DatasetFactory(
            proxy.url, str(work / "cache"), cfg.batch_size, cfg.workers, cfg.seed, cfg.download_retry
        )
        stack.callback(factory.close)
        ds, cold = _cold_epoch(cfg, out, factory, data, proxy)

        _warm_epoch(cfg, out, factory, ds, proxy)
        _resume(cfg, out, factory, cold)
        out.line("demo OK: every check passed")
        if cfg.keep:
            out.line(f"kept: dataset in {work / 'dataset'}, cache in {work / 'cache'}")
        out.line(_next_steps(work / "dataset" if cfg.keep else None))
    return 0
