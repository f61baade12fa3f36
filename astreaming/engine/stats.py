"""A dataset's counters: summed over its runtimes in this process and over its DataLoader workers.

``StreamingDataset.stats()`` must be right after every way of iterating: the sync runtime of ``for``
and ``ds[i]``, each ``async for`` (whose runtime lives only as long as the iteration), and the worker
processes of a DataLoader, whose runtimes never exist in the main process. Each runtime's counters are
folded into a :class:`StatsTally` when it goes away; each process publishes its totals to a small file
next to the dataset's epoch state (atomic rename), and the main process adds the other processes' files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astreaming.engine.runtime import Runtime

__all__ = ["DatasetStatistics", "StatsTally", "runtime_statistics"]


@dataclass(frozen=True)
class DatasetStatistics:
    """One snapshot of a dataset's counters (``StreamingDataset.statistics()``).

    Attributes:
        bytes_downloaded: Bytes transferred from remotes (shards, not indexes).
        shards_downloaded: Shards fetched from a remote.
        cache_hits: Shards found already in the cache (by another process or an earlier run).
        retries: Retried storage requests.
        wait_seconds: Time consumers spent blocked waiting for a shard.
        in_flight: Shard downloads running now (this process).
        evictions: Shards evicted under ``cache_limit`` or by ``evict_shard``.
        evicted_bytes: Bytes those evictions freed.
        range_reads: Byte-range requests of random access (their bytes count in ``bytes_downloaded``).
        refetches: Shards downloaded again within one epoch by the process that had brought them in,
            because they were evicted meanwhile: above zero, ``cache_limit`` is smaller than the set of
            shards the sample order reads from at once (see the README on ``cache_limit``).
        processes: Processes whose figures are summed (this one and DataLoader workers that reported).
    """

    bytes_downloaded: int = 0
    shards_downloaded: int = 0
    cache_hits: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    in_flight: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    range_reads: int = 0
    refetches: int = 0
    processes: int = 1

    def __add__(self, other: DatasetStatistics) -> DatasetStatistics:
        mine, theirs = dataclasses.astuple(self), dataclasses.astuple(other)
        return DatasetStatistics(*(a + b for a, b in zip(mine, theirs, strict=True)))

    def as_dict(self) -> dict[str, Any]:
        """The counters as ``stats()`` returns them."""
        return dataclasses.asdict(self)


def runtime_statistics(runtime: Runtime) -> DatasetStatistics:
    """The counters of one open runtime (zeros if it was never opened)."""
    try:
        fetch = runtime.fetcher.counters
        sched = runtime.scheduler.statistics()
    except (AssertionError, AttributeError):  # not opened (or closed): nothing counted by it
        return DatasetStatistics(processes=0)
    budget = runtime.budget.statistics() if runtime.budget is not None else None
    return DatasetStatistics(
        bytes_downloaded=fetch.bytes_downloaded,
        shards_downloaded=fetch.shards_fetched,
        cache_hits=fetch.shards_already_local + runtime.found_present,
        retries=runtime.retry_stats.retries,
        wait_seconds=sched.consumer_wait_seconds,
        in_flight=sched.in_flight,
        evictions=budget.evictions if budget is not None else 0,
        evicted_bytes=budget.evicted_bytes if budget is not None else 0,
        refetches=fetch.refetches,
        processes=0,
    )


_token: tuple[int, str] | None = None


def _process_token() -> str:
    """``pid-random``: names this process's file (a reused pid must not overwrite an earlier worker's)."""
    global _token
    if _token is None or _token[0] != os.getpid():
        _token = (os.getpid(), uuid.uuid4().hex[:8])
    return f"{_token[0]}-{_token[1]}"


class StatsTally:
    """Counters of runtimes that went away, in this process, and the files of the other processes.

    Pickles into DataLoader workers with the shared location only: a worker starts from zero.

    Args:
        prefix: Path prefix of the files (the dataset's epoch-state file; removed with it).
    """

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.pid = os.getpid()
        self.done = DatasetStatistics(processes=0)

    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"])  # type: ignore[misc]

    def folded(self) -> DatasetStatistics:
        """The counters of this process's runtimes that went away."""
        self._fresh()
        return self.done

    def fold(self, runtime: Runtime) -> None:
        """Keep the counters of a runtime that is about to close."""
        self._fresh()
        self.done = self.done + runtime_statistics(runtime)

    def publish(self, live: Runtime | None) -> None:
        """Write this process's totals (folded plus ``live``) for the other processes to read."""
        self._fresh()
        total = self.done + (runtime_statistics(live) if live is not None else DatasetStatistics(processes=0))
        path = Path(f"{self.prefix}.stats.{_process_token()}.json")
        tmp = path.with_name(f".{path.name}.tmp")
        with contextlib.suppress(OSError):  # statistics must never fail an iteration
            # No dataset state file: its owner's finalizer ran (an iteration closed at exit, after it),
            # and a file written now would outlive every process that could read or remove it.
            if not self.prefix.exists():
                return
            tmp.write_text(json.dumps(dataclasses.replace(total, in_flight=0, processes=1).as_dict()))
            os.replace(tmp, path)
            if not self.prefix.exists():  # removed meanwhile, perhaps after its finalizer's listing
                path.unlink()

    def others(self) -> DatasetStatistics:
        """The sum of the totals the other processes published."""
        total = DatasetStatistics(processes=0)
        mine = f"{self.prefix.name}.stats.{_process_token()}.json"
        for path in self.prefix.parent.glob(f"{self.prefix.name}.stats.*.json"):
            if path.name == mine:
                continue
            with contextlib.suppress(OSError, ValueError, TypeError):
                total = total + DatasetStatistics(**json.loads(path.read_text()))
        return total

    def _fresh(self) -> None:
        if self.pid != os.getpid():  # a forked copy: the parent's figures are the parent's
            self.__init__(self.prefix)  # type: ignore[misc]
