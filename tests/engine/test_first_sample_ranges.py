"""A walk's first sample is read by byte ranges while its (large) shard still downloads whole.

The proxy refuses every whole-file GET of a shard (no ``Range`` header) with 403: the whole download can
never succeed, so a first sample that arrives anyway was read by ranges, and the refusal still surfaces,
naming the shard, at the next sample. No timing is involved.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from astreaming import MDSWriter, PermissionDenied, StreamingDataLoader, StreamingDataset
from astreaming.engine.iterate import EARLY_MIN_BYTES
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy

BLOB = 4096


def _whole_shard_get(request: Any) -> bool:
    return bool(request.method == "GET" and request.path.endswith(".mds") and "Range" not in request.headers)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticHTTPServer]:
    """``big``: one shard over EARLY_MIN_BYTES; ``small``: shards under it."""
    root = tmp_path_factory.mktemp("served")
    count = EARLY_MIN_BYTES // BLOB + 16
    for name, limit in (("big", 1 << 26), ("small", EARLY_MIN_BYTES // 4)):
        with MDSWriter(out=str(root / name), columns={"id": "int", "blob": "bytes"}, size_limit=limit) as w:
            for i in range(count):
                w.write({"id": i, "blob": os.urandom(BLOB)})
    with StaticHTTPServer(root) as server:
        yield server


def _dataset(url: str, local: Path) -> StreamingDataset:
    return StreamingDataset(remote=url, local=str(local), batch_size=4, download_retry=0)


def test_first_sample_of_a_large_shard_arrives_before_the_shard(
    served: StaticHTTPServer, tmp_path: Path
) -> None:
    plan = FaultPlan(error_rate=1.0, error_statuses=(403,), match=_whole_shard_get)
    with ThreadedFaultProxy(served.url, plan) as proxy:
        ds = _dataset(f"{proxy.url}/big", tmp_path / "c")
        assert ds.num_shards == 1 and ds.shards[0].raw_data.bytes >= EARLY_MIN_BYTES
        it = iter(ds)
        first = next(it)
        assert first["id"] == 0 and len(first["blob"]) == BLOB
        assert ds.stats()["range_reads"] == 2  # the offsets table, then the sample
        with pytest.raises(PermissionDenied, match=r"shard\.00000\.mds"):
            next(it)
        ds.close()


def test_small_shards_are_waited_for_whole(served: StaticHTTPServer, tmp_path: Path) -> None:
    plan = FaultPlan(error_rate=1.0, error_statuses=(403,), match=_whole_shard_get)
    with ThreadedFaultProxy(served.url, plan) as proxy:
        ds = _dataset(f"{proxy.url}/small", tmp_path / "c")
        with pytest.raises(PermissionDenied, match=r"shard\.00000\.mds"):
            next(iter(ds))
        assert ds.stats()["range_reads"] == 0
        ds.close()


def test_batches_with_a_range_read_first_sample(served: StaticHTTPServer, tmp_path: Path) -> None:
    # The whole download stalls past the range reads (the batches are the same whichever comes first).
    plan = FaultPlan(stall_rate=1.0, stall_seconds=0.5, match=_whole_shard_get)
    with ThreadedFaultProxy(served.url, plan) as proxy:
        ds = _dataset(f"{proxy.url}/big", tmp_path / "c")
        batches = list(StreamingDataLoader(ds, batch_size=4))
        ds.close()
    ids = [i for b in batches for i in b["id"].tolist()]
    assert ids == list(range(EARLY_MIN_BYTES // BLOB + 16))
    assert all(b["id"].dtype == torch.int64 and [len(x) for x in b["blob"]] == [BLOB] * 4 for b in batches)
