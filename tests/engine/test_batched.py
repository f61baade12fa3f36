"""StreamingDataLoader's whole-batch path gives exactly the batches of torch's per-sample batching.

The reference is a plain ``torch.utils.data.DataLoader`` over the same dataset with the same arguments:
it calls the dataset's per-sample ``__iter__`` in each worker and collates with the same function.
Every batch must match it: keys, types, tensor dtypes, shapes and values, list elements and their
types, in the same order, with 0 and 2 workers, fork and spawn.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mds_samples import COLUMNS as ALL_COLUMNS
from mds_samples import sample
from torch.utils.data import DataLoader, get_worker_info

from astreaming import MDSWriter, Stream, StreamingDataLoader, StreamingDataset
from astreaming.batched import INBAND_MAX, BatchedDataset
from astreaming.collate import collate
from astreaming.format.jsonl import JSONWriter

# Every encoding the columnar path stacks (int, numpy scalars, fixed-shape arrays), the ones it slices
# (str, bytes), and some it decodes value by value (json, str_int) - all but those torch cannot collate
# (uint64 scalars, arrays of differing shapes).
COLUMNS = {k: v for k, v in ALL_COLUMNS.items() if k not in ("s_uint64", "dyn", "dyn16")}


def write(out: Path, n: int, columns: dict[str, str] = COLUMNS, size_limit: int = 4_000) -> Path:
    with MDSWriter(out=str(out), columns=columns, size_limit=size_limit) as w:
        for i in range(n):
            w.write({k: v for k, v in sample(i).items() if k in columns})
    return out


def assert_same_value(got: Any, want: Any, where: str) -> None:
    assert type(got) is type(want), where
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert torch.equal(got, want), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            assert_same_value(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_value(g, w, f"{where}[{k}]")
    else:
        assert got == want, where


def assert_same_batches(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same_value(g, w, f"batch {b}")


def both(
    remote: Path, cache: Path, batch_size: int, **kwargs: Any
) -> tuple[list[Any], list[Any], StreamingDataLoader]:
    """The batches of StreamingDataLoader and of the reference loader, each over its own dataset."""

    def dataset() -> StreamingDataset:
        return StreamingDataset(
            remote=str(remote), local=str(cache), batch_size=batch_size, shuffle=True, shuffle_seed=5
        )

    loader = StreamingDataLoader(dataset(), batch_size=batch_size, **kwargs)
    reference = DataLoader(dataset(), batch_size=batch_size, **{"collate_fn": collate, **kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)  # > 2 workers here
        got = list(loader)
    return got, list(reference), loader


@pytest.mark.parametrize(
    ("workers", "context", "drop_last"),
    [(0, None, False), (0, None, True), (2, "fork", False), (2, "fork", True), (2, "spawn", False)],
)
def test_batches_equal_per_sample_collation(
    tmp_path: Path, workers: int, context: str | None, drop_last: bool
) -> None:
    # 7 does not divide the shards' sizes: batches span shards; shuffled, they mix shards too.
    remote = write(tmp_path / "ds", 90)
    got, want, loader = both(
        remote,
        tmp_path / "cache",
        7,
        num_workers=workers,
        multiprocessing_context=context,
        drop_last=drop_last,
    )
    assert isinstance(loader._batched_loader().dataset, BatchedDataset)  # type: ignore[union-attr]
    assert_same_batches(got, want)
    ids = [i for b in got for i in b["id"].tolist()]
    assert len(ids) == len(set(ids))
    if not drop_last:
        assert sorted(ids) == list(range(90))
    else:
        assert len(ids) < 90 and all(len(b["id"]) == 7 for b in got)
    assert loader.num_samples_yielded == len(ids)


def test_big_columns_leave_workers_in_shared_memory(tmp_path: Path) -> None:
    columns = {"id": "int", "big": "ndarray:float32:64,64"}
    per_batch = INBAND_MAX // (64 * 64 * 4) + 8  # the batch's "big" tensor is over the in-band limit
    remote = tmp_path / "ds"
    with MDSWriter(out=str(remote), columns=columns, size_limit=1 << 22) as w:
        for i in range(3 * per_batch):
            w.write({"id": i, "big": np.full((64, 64), i, np.float32)})
    got, want, _ = both(remote, tmp_path / "cache", per_batch, num_workers=2, multiprocessing_context="fork")
    assert_same_batches(got, want)
    # The first batch is the main process's own (StreamingDataLoader leads: see test_lead_batch.py).
    assert not got[0]["big"].is_shared()
    assert all(b["big"].is_shared() and not b["id"].is_shared() for b in got[1:])


def test_uint64_scalars_fail_as_torch_fails(tmp_path: Path) -> None:
    remote = tmp_path / "ds"
    with MDSWriter(out=str(remote), columns={"id": "int", "u": "uint64"}) as w:
        for i in range(10):
            w.write({"id": i, "u": np.uint64(2**64 - 1 - i)})
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4)
    with pytest.raises(TypeError) as ours:
        next(iter(StreamingDataLoader(ds, batch_size=4)))
    ds2 = StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4)
    with pytest.raises(TypeError) as theirs:
        next(iter(DataLoader(ds2, batch_size=4, collate_fn=collate)))
    assert str(ours.value) == str(theirs.value)


def test_user_collate_fn_in_workers_sees_the_samples(tmp_path: Path) -> None:
    remote = write(tmp_path / "ds", 40, {"id": "int", "text": "str", "vec": "ndarray:float32:4"})
    kwargs = {"num_workers": 2, "multiprocessing_context": "fork", "collate_fn": _ids_and_types}
    got, want, _ = both(remote, tmp_path / "cache", 6, **kwargs)
    assert got == want
    assert sorted(i for b in got for i in b[0]) == list(range(40))


def _ids_and_types(samples: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
    return [s["id"] for s in samples], sorted({type(v).__name__ for s in samples for v in s.values()})


def test_mds_and_jsonl_streams_mixed_in_batches(tmp_path: Path) -> None:
    mds = write(tmp_path / "mds", 30, {"id": "int", "text": "str"}, size_limit=300)
    jsonl = tmp_path / "jsonl"
    with JSONWriter(out=str(jsonl), columns={"id": "int", "text": "str"}, size_limit=300) as w:
        for i in range(100, 130):
            w.write({"id": i, "text": f"j{i}"})
    batches: list[list[Any]] = []
    for cls in (StreamingDataLoader, DataLoader):
        ds = StreamingDataset(
            streams=[Stream(local=str(mds)), Stream(local=str(jsonl))], batch_size=5, shuffle=True
        )
        batches.append(list(cls(ds, batch_size=5, num_workers=2, collate_fn=collate)))
    got, want = batches
    assert_same_batches(got, want)
    ids = sorted(i for b in got for i in b["id"].tolist())
    assert ids == [*range(30), *range(100, 130)]
    assert any(min(b["id"].tolist()) < 100 <= max(b["id"].tolist()) for b in got)  # mixed batches
    assert json.loads((jsonl / "index.json").read_text())["shards"][0]["format"] == "json"


def test_worker_init_fn_reads_the_dataset_through_worker_info(tmp_path: Path) -> None:
    remote = write(tmp_path / "ds", 12, {"id": "int"})
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=3)
    loader = StreamingDataLoader(
        ds, batch_size=3, num_workers=2, multiprocessing_context="fork", worker_init_fn=_needs_dataset
    )
    assert sorted(i for b in loader for i in b["id"].tolist()) == list(range(12))


def _needs_dataset(worker_id: int) -> None:
    info = get_worker_info()
    assert info is not None
    if info.dataset.num_samples != 12 or info.dataset.batch_size != 3:  # type: ignore[attr-defined]
        raise RuntimeError("the worker does not see the dataset's attributes")


class TaggedDataset(StreamingDataset):
    """A user's subclass: its ``worker_init_fn`` gives the worker's dataset a tag its hook reads."""

    tag = -1

    def get_item(self, sample_id: int) -> dict[str, Any]:
        return {**super().get_item(sample_id), "tag": self.tag}


def _tag_the_dataset(worker_id: int) -> None:
    info = get_worker_info()
    assert info is not None
    # What a worker_init_fn written for torch's per-sample loading checks and does.
    if not isinstance(info.dataset, TaggedDataset) or not isinstance(info.dataset, StreamingDataset):
        raise RuntimeError(f"get_worker_info().dataset is a {type(info.dataset).__mro__}")
    info.dataset.tag = 100 + worker_id


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_worker_info_dataset_is_an_instance_of_the_users_class(tmp_path: Path, context: str) -> None:
    """``get_worker_info().dataset`` passes ``isinstance`` for the user's subclass, and what a
    ``worker_init_fn`` sets on it is what the dataset's own code reads while the worker iterates."""
    remote = write(tmp_path / "ds", 12, {"id": "int"})
    ds = TaggedDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=3)
    loader = StreamingDataLoader(
        ds, batch_size=3, num_workers=2, multiprocessing_context=context, worker_init_fn=_tag_the_dataset
    )
    batches = list(loader)
    assert sorted(i for b in batches for i in b["id"].tolist()) == list(range(12))
    assert {t for b in batches for t in b["tag"].tolist()} == {100, 101}
    assert ds.tag == -1  # the workers' copies were tagged, not the main process's dataset
