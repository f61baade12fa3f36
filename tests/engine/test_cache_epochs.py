"""Epoch boundaries under ``cache_limit``: the shards the next epoch starts with are kept, not re-downloaded.

At the end of an epoch the current plan needs none of the shards the next one starts with; without a look
at the next plan they count as never needed, go first, and come down again moments later. The walk looks
up the next epoch's first positions (cheap with the lazy plans) and eviction keeps those shards after the
current epoch's needs but before shards nobody needs. Downloads are counted, not timed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from astreaming import StreamingDataset

from .conftest import MakeDataset

SAMPLES = 800
EPOCHS = 3
#: Shards the limit holds.
HELD = 6


@pytest.mark.parametrize(("shuffle", "block"), [(False, None), (True, 150)], ids=["sweep", "block-shuffle"])
def test_the_next_epochs_first_shards_survive_the_boundary(
    make_dataset: MakeDataset, tmp_path: Path, shuffle: bool, block: int | None
) -> None:
    remote = make_dataset(SAMPLES, size_limit=2000)
    shard_bytes = max(p.stat().st_size for p in remote.glob("shard.*"))
    ds = StreamingDataset(
        remote=str(remote),
        local=str(tmp_path / "cache"),
        batch_size=4,
        shuffle=shuffle,
        shuffle_block_size=block,
        predownload=16,
        cache_limit=(remote / "index.json").stat().st_size + HELD * shard_bytes,
    )
    n = ds.num_shards
    assert n > 2 * HELD - 3  # the limit binds: an epoch cannot keep its shards
    downloads = []
    for _ in range(EPOCHS):
        assert sorted(int(s["id"]) for s in ds) == list(range(SAMPLES))  # type: ignore[call-overload]
        downloads.append(ds.stats()["shards_downloaded"])
    assert downloads[0] == n  # the first epoch downloads every shard once (no refetch in these orders)
    later = downloads[-1] - downloads[0]
    # Each boundary keeps at least HELD - 2 of the next epoch's first shards (the limit also holds the
    # shard being read and one coming in). Without the look at the next epoch: n - 2 per epoch.
    assert later <= (EPOCHS - 1) * (n - (HELD - 2)), downloads
