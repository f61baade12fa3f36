"""One rank of a training job on a shared cache, run as its own process by the node-cache tests.

Usage: ``python node_job.py REQUEST.json RESULT.json``. The request gives the dataset arguments, the
DataLoader settings and the number of epochs; RANK / WORLD_SIZE / LOCAL_WORLD_SIZE come from the
environment, as under torchrun. The result holds the sample ids of every epoch in the order the loader
yielded them, the descriptors open before and after each epoch, and the dataset's stats.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from astreaming import Stream, StreamingDataLoader, StreamingDataset


def open_fds() -> int:
    gc.collect()  # torch frees a finished DataLoader iterator's worker pipes only when it is collected
    return len(os.listdir("/proc/self/fd"))


def sample_ids(batch: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Collate a batch into its sample ids (module-level: spawned workers unpickle it by name)."""
    return {"id": [int(sample["id"]) for sample in batch]}


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
    loader = make_loader(ds, request, sample_ids)
    epochs: list[list[int]] = []
    fds: list[int] = []
    ready = request.get("ready_file")
    for _ in range(int(request.get("epochs", 1))):
        seen: list[int] = []
        for batch in loader:
            seen.extend(batch["id"])
            if ready and len(seen) >= int(request.get("ready_after", 1)):
                Path(ready).touch()  # the test may now kill a worker of ours
        epochs.append(seen)
        fds.append(open_fds())
    stats = ds.stats()
    del loader
    ds.close()
    return {"epochs": epochs, "fds_before": before, "fds_per_epoch": fds, "stats": stats}


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    result = run(request)
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
