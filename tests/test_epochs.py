"""Epoch and resume state shared between a dataset and its worker copies."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from pathlib import Path

import pytest

from astreaming.epochs import EpochControl


def _start_in_child(control: EpochControl, queue: mp.Queue[tuple[int, int]], complete: bool) -> None:
    start = control.start()
    if complete:
        control.complete(start.epoch)
    queue.put((start.epoch, start.sample_in_epoch))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_see_epochs_set_and_completed_elsewhere(tmp_path: Path, method: str) -> None:
    ctx = mp.get_context(method)
    control = EpochControl(tmp_path)
    queue: mp.Queue[tuple[int, int]] = ctx.Queue()

    def run(complete: bool) -> tuple[int, int]:
        proc = ctx.Process(target=_start_in_child, args=(control, queue, complete))
        proc.start()
        result = queue.get(timeout=60)
        proc.join(60)
        assert proc.exitcode == 0
        return result

    assert run(complete=False) == (0, 0)  # abandoned iteration: epoch does not advance
    assert run(complete=True) == (0, 0)
    assert run(complete=True) == (1, 0)
    control.set_epoch(7)
    assert run(complete=True) == (7, 0)
    assert run(complete=False) == (7, 0)  # pinned until set again
    control.load({"epoch": 3, "sample_in_epoch": 40, "num_canonical_nodes": 1, "shuffle_seed": 5})
    assert run(complete=True) == (3, 40)
    assert run(complete=False) == (4, 0)


def test_checkpoint_of_an_earlier_epoch_is_not_ignored(tmp_path: Path) -> None:
    control = EpochControl(tmp_path)
    for _ in range(3):
        control.complete(control.start().epoch)
    control.load({"epoch": 1, "sample_in_epoch": 12})
    start = control.start()
    assert (start.epoch, start.sample_in_epoch) == (1, 12)
    assert start.resume == {"epoch": 1, "sample_in_epoch": 12}
    assert control.current().sample_in_epoch == 12


def test_pickled_copy_shares_state_and_only_owner_removes_file(tmp_path: Path) -> None:
    control = EpochControl(tmp_path)
    copy = pickle.loads(pickle.dumps(control))
    copy.complete(0)
    assert control.start().epoch == 1
    path = control.path
    del copy
    assert path.exists()
    del control
    assert not path.exists()


def test_epoch_completes_only_when_every_worker_finished(tmp_path: Path) -> None:
    control = EpochControl(tmp_path)
    assert control.start().epoch == 0
    control.complete(0, worker=0, num_workers=2)
    # Worker 1 starts late, after its sibling finished: it must still run epoch 0.
    assert control.start().epoch == 0
    control.complete(0, worker=0, num_workers=2)  # the same worker again does not complete it
    assert control.start().epoch == 0
    control.complete(0, worker=1, num_workers=2)
    assert control.start().epoch == 1
