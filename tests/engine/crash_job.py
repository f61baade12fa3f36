"""One run of the crash matrix (``test_crash_matrix.py``): a training job's epochs, in a process forked
for it by ``crash_zygote.py``. The request gives the dataset arguments, the
DataLoader settings, the number of epochs and, optionally, ``kill_after_batches``: the consumer kills
itself with SIGKILL after that many batches (the library's own points are armed through
``ASTREAMING_CRASH_AT``, see ``astreaming.crashpoints``). Every sample's ``data`` is checked against
:func:`payload` where it is decoded (in the DataLoader worker); the result lists the ids of each epoch
and the ids whose bytes were wrong.
"""

from __future__ import annotations

import hashlib
import os
import signal
from typing import Any


def payload(sample_id: int) -> bytes:
    """The bytes sample ``sample_id`` holds: different for every sample, 32 to 160 bytes."""
    return hashlib.sha256(str(sample_id).encode()).digest() * (1 + sample_id % 5)


def check_batch(batch: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Collate a batch into its ids and the ids whose bytes are wrong (module-level: picklable)."""
    ids = [int(sample["id"]) for sample in batch]
    bad = [i for i, sample in zip(ids, batch, strict=True) if bytes(sample["data"]) != payload(i)]
    return {"id": ids, "bad": bad}


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run the request's epochs (in the fork server's child, where ``node_job`` is importable)."""
    from node_job import build, make_loader

    ds = build(request)
    loader = make_loader(ds, request, check_batch)
    kill_after = request.get("kill_after_batches")
    batches = 0
    epochs: list[list[int]] = []
    bad: list[int] = []
    for _ in range(int(request.get("epochs", 1))):
        seen: list[int] = []
        for batch in loader:
            seen.extend(batch["id"])
            bad.extend(batch["bad"])
            batches += 1
            if batches == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # the trainer dies mid-iteration (the OOM killer)
        epochs.append(seen)
    del loader
    ds.close()
    return {"epochs": epochs, "bad": bad}
