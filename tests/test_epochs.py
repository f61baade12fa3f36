"""Epoch and resume state shared between a dataset and its worker copies."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import time
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


# -- files of killed processes ------------------------------------------------------------------------

_HOLDER = """
import os, sys, time
from pathlib import Path
from astreaming.epochs import EpochControl
control = EpochControl(Path(sys.argv[1]))
control.set_epoch(3)
if sys.argv[2] == "fork":
    child = os.fork()
    if child == 0:  # a forked worker outlives its parent
        time.sleep(600)
        os._exit(0)
    print("child", child, flush=True)
print(control.path, flush=True)
if sys.argv[2] != "exit":
    time.sleep(600)
"""


def _holder(root: Path, mode: str) -> tuple[subprocess.Popen[str], Path, int | None]:
    """A process owning one EpochControl in ``root`` (``mode``: wait, exit, or fork a child and wait);
    returns it, its control's state path and the forked child's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), mode], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stdout is not None
    child = None
    line = proc.stdout.readline().strip()
    if line.startswith("child "):
        child = int(line.split()[1])
        line = proc.stdout.readline().strip()
    proc.stdout.close()  # it prints nothing more
    return proc, Path(line), child


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _sweep_from_a_new_process(root: Path) -> None:
    """A new dataset's control in a fresh process (the sweep runs once per process and directory)."""
    code = (
        "import sys; from pathlib import Path; from astreaming.epochs import EpochControl; "
        "EpochControl(Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, str(root)], check=True, env=_env(), timeout=120)


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_files_of_a_killed_process_are_removed_by_the_next_one(tmp_path: Path) -> None:
    killed, killed_path, _ = _holder(tmp_path, "wait")
    live, live_path, _ = _holder(tmp_path, "wait")
    try:
        killed_path.with_name(f"{killed_path.name}.stats.1-x.json").write_text("{}")  # a worker's figures
        assert killed_path.name in _files(tmp_path)
        killed.send_signal(signal.SIGKILL)
        killed.wait(60)
        assert killed_path.exists(), "nothing ran in the killed process"
        _sweep_from_a_new_process(tmp_path)
        token = killed_path.name.split(".")[0]
        assert not [name for name in _files(tmp_path) if name.startswith(token)]
        # The live process's files stay, and its control still works.
        assert live_path.exists()
        reader = EpochControl.__new__(EpochControl)
        reader.__setstate__({"path": live_path, "_owner_pid": -1})
        assert reader.upcoming() == 3
    finally:
        live.kill()
        live.wait(60)


def test_a_forked_child_keeps_its_parents_files_until_it_exits(tmp_path: Path) -> None:
    parent, path, child = _holder(tmp_path, "fork")
    assert child is not None
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(60)
        _sweep_from_a_new_process(tmp_path)
        assert path.exists(), "swept while a forked worker of its owner was still running"
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped by init: its lock is released when it is gone
    _sweep_from_a_new_process(tmp_path)
    assert not path.exists()


def test_a_process_that_exits_leaves_nothing(tmp_path: Path) -> None:
    proc, path, _ = _holder(tmp_path, "exit")
    assert path.name.endswith(".json")
    assert proc.wait(60) == 0
    assert _files(tmp_path) == set(), _files(tmp_path)


_HALF_READ = """
import sys
from astreaming import StreamingDataset
samples = iter(StreamingDataset(local=sys.argv[1], batch_size=4))
print(next(samples)["id"], flush=True)
# exits with the iteration open: its generator closes during shutdown, after the dataset's finalizer
"""


def test_an_iteration_left_open_at_exit_leaves_nothing(tmp_path: Path) -> None:
    from astreaming import MDSWriter

    data = tmp_path / "data"
    with MDSWriter(out=str(data), columns={"id": "int"}, size_limit=64) as writer:
        for i in range(20):
            writer.write({"id": i})
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**_env(), "TMPDIR": str(tmp)}  # the default control directory lives under it
    out = subprocess.run(
        [sys.executable, "-c", _HALF_READ, str(data)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"]
    control = tmp / "astreaming-control"
    assert control.is_dir(), "the dataset kept no epoch state"
    assert _files(control) == set(), _files(control)


def test_files_of_a_token_without_alive_file_are_swept(tmp_path: Path) -> None:
    live, live_path, _ = _holder(tmp_path, "wait")
    try:
        orphan = "4242-0badf00d"
        written_late = {
            f"{orphan}.0123abcd.json",
            f"{orphan}.0123abcd.json.stats.4243-00c0ffee.json",
        }
        starting = f"{orphan[:-1]}e.alive.tmp"  # another process taking its token right now
        old_style = "0123456789abcdef0123456789abcdef.json"  # named before tokens: owner unknown
        for name in [*written_late, starting, old_style]:
            (tmp_path / name).write_text("{}")
        _sweep_from_a_new_process(tmp_path)
        left = _files(tmp_path)
        assert not written_late & left
        assert {starting, old_style, live_path.name} <= left
        assert live_path.with_name(f"{live_path.name.split('.')[0]}.alive").exists()
    finally:
        live.kill()
        live.wait(60)
