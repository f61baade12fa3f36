"""The first sample of a cached dataset: no heavy import and no pass over every shard on its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astreaming.engine.iterate import sorted_unique

from .conftest import MakeDataset


@pytest.mark.parametrize(
    "values",
    [[], [5], [3, 3], [9, 1, 4, 1, 9, 2, 6, 5, 3, 5], list(range(100, 0, -7)) * 3],
)
def test_sorted_unique_matches_numpy_unique(values: list[int]) -> None:
    array = np.asarray(values, np.int64)
    got = sorted_unique(array)
    assert got.tolist() == np.unique(array).tolist()
    assert got.dtype == np.int64


def test_sorted_unique_on_random_arrays() -> None:
    rng = np.random.default_rng(7)
    for size in (2, 17, 1000):
        array = rng.integers(-50, 50, size).astype(np.int64)
        assert sorted_unique(array).tolist() == np.unique(array).tolist()


_FIRST_SAMPLE = """
import sys
from astreaming import StreamingDataset
heavy = ("numpy.ma", "numpy.random")
before = [m for m in heavy if m in sys.modules]
ds = StreamingDataset(local=sys.argv[1], batch_size=4)
sample = next(iter(ds))
after = [m for m in heavy if m in sys.modules]
print(before, after, sample["id"])
"""


def test_first_cached_sample_imports_neither_numpy_ma_nor_numpy_random(make_dataset: MakeDataset) -> None:
    # A fresh interpreter: the test process itself has long imported both.
    data = make_dataset(40, size_limit=300)
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_SAMPLE, str(data)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]", "0"]


def test_shard_sizes_come_from_the_index_without_touching_the_cache(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    # The largest shard is asked at construction: answering it from the index needs no cache path.
    from astreaming import StreamingDataset

    data = make_dataset(40, size_limit=300)
    ds = StreamingDataset(remote=str(data), local=str(tmp_path / "cache"), batch_size=4)
    table = ds._table
    assert table._files == [None] * table.num_shards
    sizes = [table.max_bytes(s) for s in range(table.num_shards)]
    assert sizes == [e.raw_data.bytes for e in table.entries]


def test_a_local_dataset_is_built_without_a_thread(
    make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its indexes are read where it is constructed: no thread and loop for nothing to await (a third of
    # a cached dataset's construction -> first sample went to them).
    import threading

    from astreaming import StreamingDataset

    started: list[str] = []
    start = threading.Thread.start

    def record(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    data = make_dataset(40, size_limit=300)
    monkeypatch.setattr(threading.Thread, "start", record)
    ds = StreamingDataset(local=str(data), batch_size=4)
    assert started == []
    assert ds.num_shards > 1
    assert [s["id"] for s in ds] == list(range(40))  # the walk itself still runs the loop thread
