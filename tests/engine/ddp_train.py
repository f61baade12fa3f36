"""A tiny DDP training job for the torchrun test: 2 ranks (gloo, 127.0.0.1) on one shared cache.

Usage (under torchrun): ``ddp_train.py REMOTE LOCAL CACHE_LIMIT OUT_DIR``. Each rank trains a one-weight
model for 3 epochs from a StreamingDataLoader with 2 workers, then writes its batch counts and sample ids.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from astreaming import StreamingDataLoader, StreamingDataset


def to_tensor(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {"id": torch.tensor([int(s["id"]) for s in batch], dtype=torch.float32)}


def main() -> None:
    remote, local, limit, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = DistributedDataParallel(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    ds = StreamingDataset(remote=remote, local=local, batch_size=8, shuffle=True, cache_limit=limit)
    loader = StreamingDataLoader(ds, batch_size=8, num_workers=2, collate_fn=to_tensor)
    counts, ids = [], []
    for _ in range(3):
        batches, seen = 0, []
        for batch in loader:
            x = batch["id"].unsqueeze(1)
            loss = model(x / 1000).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()  # DDP all-reduces here: unequal batch counts across ranks would hang
            optimizer.step()
            batches += 1
            seen += [int(v) for v in batch["id"].tolist()]
        counts.append(batches)
        ids.append(seen)
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, counts)
    (out / f"rank{rank}.json").write_text(json.dumps({"counts": counts, "all": everyone, "ids": ids}))
    ds.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
