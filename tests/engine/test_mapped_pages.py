"""A walk gives back the mapped pages it has read: the resident set of an epoch stays near the process's
own memory instead of growing by every shard it has mapped (``RELEASE_EVERY``, engine/readers.py).

Measured from the kernel's own account (``/proc/<pid>/smaps``: the resident kilobytes of each mapping of
a shard file), in the main process and in DataLoader workers, with the readers still open: closing them
would free the pages too, and is not what is tested.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset
from astreaming.engine import iterate, readers
from astreaming.format.mds.reader import MDSReader

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/smaps")

SAMPLES = 1200
BLOB = 40_000  # 48 MB in all
SHARD = 4 << 20


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mapped") / "ds"
    rng = np.random.default_rng(0)
    with MDSWriter(out=str(out), columns={"id": "int", "blob": "bytes"}, size_limit=SHARD) as writer:
        for i in range(SAMPLES):
            writer.write({"id": i, "blob": rng.bytes(BLOB)})
    return out


def mapped_shards(pid: int | str, root: Path) -> tuple[int, int]:
    """(how many shard files ``pid`` maps, their resident bytes in all)."""
    count, resident, inside = 0, 0, False
    prefix = str(root)
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if "-" in head[0] and not head[0].endswith(":"):  # a mapping's header line
                inside = len(head) == 6 and head[5].strip().startswith(prefix)
                count += inside
            elif inside and head[0] == "Rss:":
                resident += int(head[1]) * 1024
    return count, resident


def children() -> list[int]:
    """The pids of this process's children (the DataLoader workers, and any helper process)."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


#: What may stay resident: the bytes decoded since the last release, the shard being read (the kernel
#: maps cached pages in large folios, up to a whole small shard), and one more for the folio slack.
BOUND = readers.RELEASE_EVERY + 2 * SHARD


def _ds(root: Path) -> StreamingDataset:
    return StreamingDataset(local=str(root), batch_size=8, shuffle=False)


def _three_quarters(it: Iterator[object], per_item: int) -> int:
    taken = 0
    while taken < SAMPLES * 3 // 4:
        next(it)
        taken += per_item
    return taken


def test_plain_loop_keeps_mapped_pages_bounded(dataset: Path) -> None:
    ds = _ds(dataset)
    it = iter(ds)
    _three_quarters(it, 1)
    count, resident = mapped_shards("self", dataset)
    rest = sum(1 for _ in it)
    assert rest == SAMPLES - SAMPLES * 3 // 4
    assert count >= 6, "the readers of the shards already read stay open (mapped)"
    assert resident <= BOUND, f"{resident} resident bytes of {count} mapped shards"


def test_without_releasing_the_pages_stay(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same walk with releases turned off: the bound above is what they buy (so the tests can fail)."""
    monkeypatch.setattr(iterate, "RELEASE_EVERY", 1 << 60)
    it = iter(_ds(dataset))
    _three_quarters(it, 1)
    _, resident = mapped_shards("self", dataset)
    assert resident > BOUND
    assert sum(1 for _ in it) == SAMPLES - SAMPLES * 3 // 4


def test_async_loop_keeps_mapped_pages_bounded(dataset: Path) -> None:
    async def walk() -> tuple[int, int, int]:
        seen, measured = 0, (0, 0)
        async for _ in _ds(dataset):
            seen += 1
            if seen == SAMPLES * 3 // 4:
                measured = mapped_shards("self", dataset)
        return seen, *measured

    seen, count, resident = asyncio.run(walk())
    assert seen == SAMPLES
    assert count >= 6
    assert resident <= BOUND


@pytest.mark.parametrize(
    ("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")], ids=["0w", "2w-fork", "2w-spawn"]
)
def test_loader_workers_keep_mapped_pages_bounded(dataset: Path, workers: int, context: str | None) -> None:
    loader = StreamingDataLoader(
        _ds(dataset), batch_size=8, num_workers=workers, multiprocessing_context=context
    )
    it = iter(loader)
    taken = _three_quarters(it, 8)
    pids = [os.getpid()] if workers == 0 else children()
    measured = [mapped_shards(pid, dataset) for pid in pids]
    ids = np.concatenate([batch["id"].numpy() for batch in it])
    assert len(ids) == SAMPLES - taken
    assert sum(count for count, _ in measured) >= 6
    for count, resident in measured:
        assert resident <= BOUND, f"{resident} resident bytes of {count} mapped shards"


def test_a_release_drops_only_the_readers_read_since_the_last(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each release gives back the pages of the readers handed out since the one before (and of the shard
    read on), not those of every open reader: a shard is released while it is read, and once after. With
    every reader still open, releasing them all cost an epoch one ``madvise`` per open reader each time."""
    counts = {"releases": 0, "readers": 0}
    cache_release = readers.ReaderCache.release_pages
    reader_release = MDSReader.release_pages

    def count_release(self: readers.ReaderCache, *, keep: int | None = None) -> None:
        counts["releases"] += self._mapped >= readers.RELEASE_EVERY  # one that releases anything
        cache_release(self, keep=keep)

    def count_reader(self: MDSReader) -> None:
        counts["readers"] += 1
        reader_release(self)

    monkeypatch.setattr(readers.ReaderCache, "release_pages", count_release)
    monkeypatch.setattr(MDSReader, "release_pages", count_reader)
    ds = _ds(dataset)
    assert sum(1 for _ in ds) == SAMPLES
    assert counts["releases"] >= 10
    assert counts["readers"] <= counts["releases"] + ds.num_shards, counts
