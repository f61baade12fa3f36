"""One rank of a training job on a shared cache, run as its own process by the node-cache tests.

Usage: ``python node_job.py REQUEST.json RESULT.json``. The request gives the dataset arguments, the
DataLoader settings and the number of epochs; RANK / WORLD_SIZE / LOCAL_WORLD_SIZE come from the
environment, as under torchrun. The result holds the sample ids of every epoch in the order the loader
yielded them, the descriptors open before and after each epoch, and the dataset's stats.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from astreaming import Stream, StreamingDataLoader, StreamingDataset
from astreaming.fetch.loop_thread import get_loop_thread


def open_fds() -> int:
    gc.collect()  # torch frees a finished DataLoader iterator's worker pipes only when it is collected
    return len(os.listdir("/proc/self/fd"))


def sample_ids(batch: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Collate a batch into its sample ids (module-level: spawned workers unpickle it by name)."""
    return {"id": [int(sample["id"]) for sample in batch]}


def own_threads() -> int:
    """Threads, except those of asyncio's default executor: that pool starts threads as work overlaps,
    up to its fixed size, so its count grows over the first epochs without anything leaking."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith("asyncio_"))


def thread_names() -> list[str]:
    """The names of :func:`own_threads`, for a failure message that says which thread stayed."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def settle(fds: list[int], threads: list[int], names: list[list[str]], within: float = 20.0) -> float:
    """Re-count the last epoch's descriptors and threads until they are back at the first epoch's.

    A thread that is still finishing when an epoch ends (multiprocessing's queue feeder thread closes its
    pipe only after torch shut the workers down) is counted once on a loaded machine; a leak stays. So the
    counts are taken again, for at most ``within`` seconds, until they are no higher than the first
    epoch's; a leak still fails after that. Returns how long it took."""
    began = time.monotonic()
    while (fds[-1] > fds[0] or threads[-1] > threads[0]) and time.monotonic() - began < within:
        time.sleep(0.05)
        fds[-1], threads[-1], names[-1] = open_fds(), own_threads(), thread_names()
    return time.monotonic() - began


async def _count_tasks() -> int:
    return len(asyncio.all_tasks())


def probed_ids(batch: list[dict[str, Any]]) -> dict[str, list[int]]:
    """:func:`sample_ids`, plus what the worker holds now: pid, descriptors, threads, loop tasks."""
    loop_thread = get_loop_thread()  # running already: the worker iterates on it
    tasks = asyncio.run_coroutine_threadsafe(_count_tasks(), loop_thread.loop).result()
    held = [os.getpid(), len(os.listdir("/proc/self/fd")), own_threads(), tasks]
    return {**sample_ids(batch), "probe": held}


def build(request: dict[str, Any]) -> StreamingDataset:
    kwargs = dict(request["dataset"])
    streams = kwargs.pop("streams", None)
    if streams is not None:
        kwargs["streams"] = [Stream(**s) for s in streams]
    return StreamingDataset(**kwargs)


def make_loader(ds: StreamingDataset, request: dict[str, Any], collate_fn: Any) -> StreamingDataLoader:
    """The request's DataLoader over ``ds`` (``num_workers``, ``context``, ``persistent``)."""
    workers = int(request.get("num_workers", 0))
    return StreamingDataLoader(
        ds,
        batch_size=ds.batch_size,
        num_workers=workers,
        multiprocessing_context=request.get("context") if workers else None,
        persistent_workers=bool(workers and request.get("persistent")),
        collate_fn=collate_fn,
    )


def run(request: dict[str, Any]) -> dict[str, Any]:
    before = open_fds()
    ds = build(request)
    loader = make_loader(ds, request, probed_ids if request.get("probe") else sample_ids)
    epochs: list[list[int]] = []
    fds: list[int] = []
    threads: list[int] = []
    names: list[list[str]] = []
    # Per epoch and worker pid: the fewest and the most descriptors, threads and loop tasks it held at
    # a batch: [fds, threads, tasks] floors, then the same peaks.
    held: list[dict[str, list[int]]] = []
    ready = request.get("ready_file")
    for _ in range(int(request.get("epochs", 1))):
        seen: list[int] = []
        least: dict[str, list[int]] = {}
        held.append(least)
        for batch in loader:
            seen.extend(batch["id"])
            if "probe" in batch:
                pid, *now = (int(v) for v in batch["probe"])
                floors, peaks = (least.get(str(pid)) or now + now)[:3], (least.get(str(pid)) or now + now)[3:]
                least[str(pid)] = [min(a, b) for a, b in zip(floors, now, strict=True)] + [
                    max(a, b) for a, b in zip(peaks, now, strict=True)
                ]
            if ready and len(seen) >= int(request.get("ready_after", 1)):
                Path(ready).touch()  # the test may now kill a worker of ours
        epochs.append(seen)
        fds.append(open_fds())
        threads.append(own_threads())
        names.append(thread_names())
    before_settle = [fds[-1], threads[-1], names[-1]] if fds else []
    settled_s = settle(fds, threads, names) if fds else 0.0
    stats = ds.stats()
    del loader
    ds.close()
    return {
        "epochs": epochs,
        "fds_before": before,
        "fds_per_epoch": fds,
        "threads_per_epoch": threads,
        "thread_names_per_epoch": names,
        "last_epoch_before_settling": before_settle,
        "settled_s": settled_s,
        "worker_held": held,
        "stats": stats,
    }


def main() -> None:
    # On a test timeout, stacks of this job and its forked workers (tests/engine/stacks.py).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    request = json.loads(Path(sys.argv[1]).read_text())
    result = run(request)
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
