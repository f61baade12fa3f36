"""One rank of a job that is preempted mid-epoch and restarted, run as its own process.

Usage: ``python resume_job.py REQUEST.json RESULT.json``. RANK / WORLD_SIZE / LOCAL_WORLD_SIZE come from
the environment, as under torchrun. The request gives the dataset arguments (``streams``: a list of
``Stream`` arguments), the DataLoader settings and the phase:

- ``"full"``: ``epochs`` whole epochs;
- ``"stop"``: ``stop_after`` batches, then ``StreamingDataLoader.state_dict()`` is written to ``state``
  and the process ends (a preemption);
- ``"resume"``: ``state`` is loaded into a new dataset and loader, the rest of the epoch runs, then one
  more epoch.

The result holds the sample ids of each epoch (or part) in the order the loader yielded them; with
``"catch": true`` in the request, an exception is recorded instead (type names, message, ``url``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from astreaming import Stream, StreamingDataLoader, StreamingDataset


def sample_ids(batch: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Collate a batch into its ids (module-level: spawned workers unpickle it by name)."""
    return {"id": [int(sample["id"]) for sample in batch]}


def build(request: dict[str, Any]) -> StreamingDataset:
    """The request's dataset; ``streams`` in its arguments is a list of ``Stream`` keyword arguments."""
    kwargs = dict(request["dataset"])
    if "streams" in kwargs:
        kwargs["streams"] = [Stream(**stream) for stream in kwargs["streams"]]
    return StreamingDataset(**kwargs)


def run(request: dict[str, Any]) -> dict[str, Any]:
    ds = build(request)
    workers = int(request.get("num_workers", 0))
    loader = StreamingDataLoader(
        ds,
        batch_size=ds.batch_size,
        num_workers=workers,
        multiprocessing_context=request.get("context") if workers else None,
        collate_fn=sample_ids,
    )
    phase = request["phase"]
    epochs: list[list[int]] = []
    if phase == "full":
        for _ in range(int(request["epochs"])):
            epochs.append([i for batch in loader for i in batch["id"]])
        return {"epochs": epochs}
    if phase == "stop":
        head: list[int] = []
        for done, batch in enumerate(loader, 1):
            head.extend(batch["id"])
            if done == int(request["stop_after"]):
                break
        state = loader.state_dict()
        Path(request["state"]).write_text(json.dumps(state))
        return {"epochs": [head], "state": state}
    loader.load_state_dict(json.loads(Path(request["state"]).read_text()))
    for _ in range(2):
        epochs.append([i for batch in loader for i in batch["id"]])
    return {"epochs": epochs, "state_at_end": loader.state_dict(), "stats": ds.stats()}


def caught(e: BaseException) -> dict[str, Any]:
    """What the job saw of an error: its type's name and bases, message and ``url``."""
    return {
        "types": [t.__name__ for t in type(e).__mro__],
        "message": str(e),
        "url": getattr(e, "url", None),
    }


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = run(request)
    except Exception as e:  # recorded for the test when the request says so
        if not request.get("catch"):
            raise
        result = {"error": caught(e)}
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
