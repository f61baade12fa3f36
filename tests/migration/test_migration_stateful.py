"""torchdata's ``StatefulDataLoader`` saves and restores a StreamingDataset mid-epoch, like
``StreamingDataLoader`` does: stop at batch k, reload into a fresh dataset and loader, the tail is identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from astreaming import StreamingDataLoader, StreamingDataset

from .conftest import MakeDataset

# torchdata 0.11 (its latest release) still calls torch APIs that torch 2.13 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")


def batches(loader: object, limit: int | None = None) -> list[list[int]]:
    out: list[list[int]] = []
    for batch in loader:  # type: ignore[attr-defined]
        out.append(batch["id"].tolist())
        if limit is not None and len(out) == limit:
            break
    return out


@pytest.mark.parametrize(
    ("loader_cls", "stop_at"), [(StatefulDataLoader, 3), (StatefulDataLoader, 7), (StreamingDataLoader, 5)]
)
def test_stop_reload_and_the_tail_is_identical(
    loader_cls: type, stop_at: int, make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(80, size_limit=500)
    kwargs = dict(remote=str(remote), batch_size=4, shuffle=True, shuffle_seed=11)

    def loader(name: str) -> object:
        ds = StreamingDataset(local=str(tmp_path / name), **kwargs)  # type: ignore[arg-type]
        return loader_cls(ds, batch_size=4, num_workers=2)

    full = batches(loader("full"))
    assert sorted(i for b in full for i in b) == list(range(80))
    first = loader("first")
    head = batches(first, stop_at)
    state = first.state_dict()  # type: ignore[attr-defined]
    resumed = loader("resumed")
    resumed.load_state_dict(state)  # type: ignore[attr-defined]
    tail = batches(resumed)
    assert head == full[:stop_at]
    assert tail == full[stop_at:]


WORKERS = pytest.mark.parametrize(
    ("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")], ids=["in-process", "fork", "spawn"]
)


def _stateful(tmp_path: Path, name: str, make_dataset: MakeDataset, workers: int, context: str | None) -> Any:
    remote = tmp_path / "remote0"  # the test's first dataset: every loader of a test reads the same
    if not remote.exists():
        remote = make_dataset(50, size_limit=400)
    ds = StreamingDataset(
        remote=str(remote), local=str(tmp_path / name), batch_size=4, shuffle=True, shuffle_seed=3
    )
    return StatefulDataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=context)


@WORKERS
def test_stateful_mid_epoch_resume_with_and_without_workers(
    workers: int, context: str | None, make_dataset: MakeDataset, tmp_path: Path
) -> None:
    """Without workers torchdata asks the iterator in this process for its position: a reload continues
    after the batches yielded (it restarted the epoch, repeating them), then runs the next epoch."""
    reference = _stateful(tmp_path, "full", make_dataset, workers, context)
    full = [batches(reference), batches(reference)]
    first = _stateful(tmp_path, "first", make_dataset, workers, context)
    head = batches(first, 5)
    resumed = _stateful(tmp_path, "resumed", make_dataset, workers, context)
    resumed.load_state_dict(first.state_dict())
    assert head + batches(resumed) == full[0]
    assert batches(resumed) == full[1]


@WORKERS
def test_stateful_state_saved_after_the_epoch_starts_the_next_one(
    workers: int, context: str | None, make_dataset: MakeDataset, tmp_path: Path
) -> None:
    """A state saved once the epoch ran out (torchdata marks its iterator finished) resumes with the
    next epoch: never epoch 0 again (the workers that restored the finished iterator used to leave the
    epoch at 0, or not, depending on whether they got to end their part before torch replaced them)."""
    reference = _stateful(tmp_path, "full", make_dataset, workers, context)
    full = [batches(reference) for _ in range(3)]
    first = _stateful(tmp_path, "first", make_dataset, workers, context)
    assert batches(first) == full[0]
    resumed = _stateful(tmp_path, "resumed", make_dataset, workers, context)
    resumed.load_state_dict(first.state_dict())
    assert batches(resumed) == full[1]
    assert batches(resumed) == full[2]


class _OwnIter(StreamingDataset):
    """A subclass whose ``__iter__`` wraps the dataset's (as a user's may, to log or count)."""

    def __iter__(self) -> Any:
        return super().__iter__()


def test_stateful_without_workers_resumes_a_subclass_iterating_through_super(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(40, size_limit=400)

    def loader(name: str) -> Any:
        ds = _OwnIter(remote=str(remote), local=str(tmp_path / name), batch_size=4, shuffle=True)
        return StatefulDataLoader(ds, batch_size=4)

    full = batches(loader("full"))
    first = loader("first")
    head = batches(first, 3)
    resumed = loader("resumed")
    resumed.load_state_dict(first.state_dict())
    assert head + batches(resumed) == full
