"""One rank of a two-epoch job for tests/engine/test_remote_versions.py, run as its own process.

Usage: ``python version_rank_job.py REMOTE LOCAL RESULT``; RANK / WORLD_SIZE / LOCAL_WORLD_SIZE come from
the environment, as under torchrun. The rank builds its dataset, touches ``RESULT.built``, waits for
``RESULT.go``, then runs two epochs through 2 spawned DataLoader workers and writes the samples of each
epoch, or the error that ended it (type and message), to ``RESULT``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from astreaming import StreamingDataLoader, StreamingDataset


def main(remote: str, local: str, result: Path) -> None:
    ds = StreamingDataset(remote=remote, local=local, batch_size=4, download_retry=1)
    out: dict[str, Any] = {"samples": ds.num_samples, "epochs": []}
    Path(f"{result}.built").touch()
    go = Path(f"{result}.go")
    while not go.exists():  # the test rewrites the dataset between the ranks' builds
        time.sleep(0.02)
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    try:
        for _ in range(2):
            out["epochs"].append(sum(len(batch["id"]) for batch in loader))
    except Exception as e:  # the test asserts the type and the message
        out["error"] = [type(e).__name__, str(e)]
    result.write_text(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
