"""StreamingDataLoader's main process yields worker 0's first batch before torch starts the workers.

The workers then take the rest in a rotated role (torch's worker k walks worker k + 1's plan, its last
worker walks worker 0's without the first batch), which must give exactly torch's round-robin order:
every test compares the whole sequence of batches with a plain torch ``DataLoader`` over the same
dataset (per-sample iteration, torch's own batching), with workers of different lengths, short last
batches, ``drop_last``, empty workers, resumption, fork and spawn.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import DataLoader

from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset
from astreaming.collate import collate

# Three and four workers on a 2-core machine: torch's advice against more workers than cores is moot here.
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


class _Tokenised(StreamingDataset):
    """A subclass hook: decoding goes through it, so the main process must not decode for a worker."""

    def get_item(self, sample_id: int) -> dict[str, Any]:
        return super().get_item(sample_id)


def _write(out: Path, n: int) -> Path:
    with MDSWriter(out=str(out), columns={"id": "int"}, size_limit=200) as w:
        for i in range(n):
            w.write({"id": i})
    return out


def _dataset(remote: Path, cache: Path, batch_size: int, cls: type = StreamingDataset, **kw: Any) -> Any:
    return cls(
        remote=str(remote), local=str(cache), batch_size=batch_size, shuffle=True, shuffle_seed=3, **kw
    )


def _ids(batches: list[Any]) -> list[list[int]]:
    return [b["id"].tolist() for b in batches]


def _reference(ds: StreamingDataset, batch_size: int, **kwargs: Any) -> list[list[int]]:
    """torch's own order: its DataLoader batching the dataset's per-sample iteration."""
    return _ids(list(DataLoader(ds, batch_size=batch_size, collate_fn=collate, **kwargs)))


def _workers() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


# (samples, batch size, workers, drop_last): even parts; parts of different lengths with short last
# batches, kept or dropped; more workers than batches (empty workers); one worker.
SHAPES = [(96, 4, 3, False), (61, 4, 3, False), (61, 4, 3, True), (10, 4, 4, False), (23, 5, 1, True)]


@pytest.mark.parametrize(("n", "batch_size", "workers", "drop_last"), SHAPES)
def test_lead_keeps_torchs_order_fork(
    tmp_path: Path, n: int, batch_size: int, workers: int, drop_last: bool
) -> None:
    remote = _write(tmp_path / "ds", n)
    kwargs: dict[str, Any] = {
        "num_workers": workers,
        "multiprocessing_context": "fork",
        "drop_last": drop_last,
    }
    ds = _dataset(remote, tmp_path / "cache", batch_size)
    loader = StreamingDataLoader(ds, batch_size=batch_size, **kwargs)
    before = _workers()
    it = iter(loader)
    first = next(it)
    assert _workers() == before  # the first batch came from the main process, before any worker
    got = [first, *it]
    want = _reference(_dataset(remote, tmp_path / "cache2", batch_size), batch_size, **kwargs)
    assert _ids(got) == want
    assert loader.num_samples_yielded == sum(map(len, want))
    assert ds.next_epoch == 1  # the workers completed the epoch; the main process's walk did not count


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_resumed_epoch_continues_exactly(tmp_path: Path, context: str) -> None:
    remote = _write(tmp_path / "ds", 77)
    kwargs: dict[str, Any] = {"num_workers": 3, "multiprocessing_context": context}
    first_run = StreamingDataLoader(_dataset(remote, tmp_path / "cache", 4), batch_size=4, **kwargs)
    taken = []
    for batch in first_run:
        taken.append(batch)
        if len(taken) == 5:
            break
    state = first_run.state_dict()
    assert state is not None and state["sample_in_epoch"] == 20

    resumed = StreamingDataLoader(_dataset(remote, tmp_path / "cache", 4), batch_size=4, **kwargs)
    resumed.load_state_dict(state)
    before = _workers()
    it = iter(resumed)
    head = next(it)
    assert _workers() == before
    tail = [head, *it]

    reference = _dataset(remote, tmp_path / "cache2", 4)
    whole = _reference(reference, 4, **kwargs)
    reference.load_state_dict(state)
    assert _ids(taken) == whole[:5]
    assert _ids(tail) == _reference(reference, 4, **kwargs)
    assert _ids(taken) + _ids(tail) == whole


def test_abandoned_after_the_first_batch_starts_no_worker_and_keeps_the_epoch(tmp_path: Path) -> None:
    remote = _write(tmp_path / "ds", 40)
    ds = _dataset(remote, tmp_path / "cache", 4)
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    before = _workers()
    first = next(iter(loader))
    assert _workers() == before
    assert ds.next_epoch == 0  # not completed: the next iteration runs epoch 0 again, from its start
    again = _ids(list(loader))
    assert again[0] == first["id"].tolist() and len(again) == 10


def _plain_hook(samples: list[Any]) -> Any:
    return collate(samples)


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (StreamingDataset, {"persistent_workers": True}),
        (StreamingDataset, {"collate_fn": _plain_hook}),
        (StreamingDataset, {"in_order": False}),
        (_Tokenised, {}),
        (StreamingDataset, {"cache_limit": 1 << 30}),
    ],
    ids=["persistent", "collate_fn", "not_in_order", "subclass_hook", "cache_limit"],
)
def test_no_lead_where_the_main_process_could_differ(
    tmp_path: Path, cls: type, extra: dict[str, Any]
) -> None:
    remote = _write(tmp_path / "ds", 61)
    ds_kw = {k: v for k, v in extra.items() if k == "cache_limit"}
    loader_kw = {k: v for k, v in extra.items() if k != "cache_limit"}
    kwargs: dict[str, Any] = {"num_workers": 3, "multiprocessing_context": "fork"}
    loader = StreamingDataLoader(
        _dataset(remote, tmp_path / "cache", 4, cls, **ds_kw), batch_size=4, **kwargs, **loader_kw
    )
    before = _workers()
    it = iter(loader)
    first = next(it)
    assert _workers() - before  # the workers made the first batch
    got = _ids([first, *it])
    want = _reference(_dataset(remote, tmp_path / "cache2", 4), 4, **kwargs)
    if extra.get("in_order") is False:
        assert sorted(map(tuple, got)) == sorted(map(tuple, want))
    else:
        assert got == want
