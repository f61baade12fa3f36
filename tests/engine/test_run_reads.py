"""A walk over large samples reads each segment with one ``pread`` of its bytes (``MDSReader.get_run``): every
sample arrives whole and once, in process and in DataLoader workers (fork and spawn), in file order and
shuffled, from a local dataset and from a remote under a ``cache_limit``."""

from __future__ import annotations

from pathlib import Path

import pytest
from preads import spy_preads

from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset
from astreaming.format.mds.reader import SPAN_READ_MIN

SAMPLES = 120
PAD = SPAN_READ_MIN // 4  # four samples fill a span read


def _pad(i: int) -> bytes:
    return bytes([i % 251]) * (PAD + i)


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("big") / "data"
    with MDSWriter(out=str(out), columns={"id": "int", "pad": "bytes"}, size_limit=20 * PAD) as writer:
        for i in range(SAMPLES):
            writer.write({"id": i, "pad": _pad(i)})
    return out


def _checked_ids(ds: StreamingDataset, workers: int, context: str | None) -> list[int]:
    """The ids of one epoch, each sample's bytes checked where it was decoded's consumer sees it."""
    ids: list[int] = []
    if not workers:
        for sample in ds:
            assert sample["pad"] == _pad(sample["id"]), sample["id"]
            ids.append(sample["id"])
        return sorted(ids)
    loader = StreamingDataLoader(
        ds, batch_size=4, num_workers=workers, multiprocessing_context=context, collate_fn=list
    )
    for batch in loader:
        for sample in batch:
            assert sample["pad"] == _pad(sample["id"]), sample["id"]
            ids.append(sample["id"])
    return sorted(ids)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize(
    ("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")], ids=["0w", "2w-fork", "2w-spawn"]
)
def test_large_samples_arrive_whole_and_once(
    big_dataset: Path, workers: int, context: str | None, shuffle: bool
) -> None:
    ds = StreamingDataset(local=str(big_dataset), batch_size=4, shuffle=shuffle, shuffle_block_size=40)
    try:
        assert _checked_ids(ds, workers, context) == list(range(SAMPLES))
    finally:
        ds.close()


def test_an_in_order_walk_reads_by_span(big_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = spy_preads(monkeypatch)
    ds = StreamingDataset(local=str(big_dataset), batch_size=4)
    try:
        assert _checked_ids(ds, 0, None) == list(range(SAMPLES))
    finally:
        ds.close()
    assert sizes and min(sizes) >= SPAN_READ_MIN
    assert sum(sizes) >= SAMPLES * PAD * 0.9  # nearly every sample's bytes came by span reads


@pytest.mark.parametrize(("workers", "context"), [(0, None), (2, "spawn")], ids=["0w", "2w-spawn"])
def test_large_samples_from_a_remote_under_a_cache_limit(
    big_dataset: Path, tmp_path: Path, workers: int, context: str | None
) -> None:
    # Room for five shards of seven (the least it accepts: 4x the largest): shards are evicted and
    # fetched again within each epoch.
    limit = 5 * 20 * PAD
    ds = StreamingDataset(
        remote=str(big_dataset), local=str(tmp_path / "cache"), batch_size=4, cache_limit=limit, shuffle=True
    )
    try:
        for _ in range(2):  # the second epoch starts on a cache the first one filled and evicted
            assert _checked_ids(ds, workers, context) == list(range(SAMPLES))
        assert ds.stats()["evictions"] > 0
    finally:
        ds.close()
