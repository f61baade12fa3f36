"""Clean, prompt shutdown (issue 10): StreamingDataLoader stops its own workers when an error comes
through, a worker waiting for a shard notices the shutdown instead of being killed at torch's 5 s join
timeout, and an abandoned iterator stays silent at interpreter exit.

The assertions are on the mechanism (the workers were shut down before the error reached the caller,
and each exited by itself, exit code 0, not terminated), never on wall-clock time; the README's
reliability section has the measured times.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import multiprocessing
import multiprocessing.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import dataloader as torch_dataloader

from astreaming import StreamingDataLoader, StreamingDataset
from astreaming import dataloader as dataloader_module
from astreaming.dataloader import _ExitShortcut, _WorkerInit
from astreaming.errors import ObjectNotFound
from astreaming.fetch import workerexit
from astreaming.fetch.loop_thread import LoopThread
from astreaming.fetch.scheduler import FetchScheduler
from astreaming.fetch.stopping import WorkersStopping, install_stop_event
from astreaming.fetch.waiter import ShardWaiter
from astreaming.fetch.workerexit import WorkerExit

from . import exit_markers
from .conftest import read_index, write_dataset
from .servers import RuleServer, split_by_worker

NUM_SAMPLES = 40
BATCH = 4


def _serve(tmp_path: Path, *, fail: bool) -> Iterator[tuple[str, int]]:
    root = tmp_path / "site"
    write_dataset(root / "ds", NUM_SAMPLES, size_limit=200)  # one sample per shard
    index = read_index(root / "ds")
    with RuleServer(root, split_by_worker(index, BATCH, fail=fail)) as server:
        yield f"{server.url}/ds", len(index["shards"])


@pytest.fixture
def stalling_remote(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The first batch is served, then worker 1 fails and worker 0 waits for a stalled shard."""
    yield from _serve(tmp_path, fail=True)


@pytest.fixture
def stalled_remote(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The first batch is served, then both workers wait for stalled shards."""
    yield from _serve(tmp_path, fail=False)


class _ShutdownSpy:
    """Records, when torch shuts a DataLoader iterator's workers down, how each worker process ended
    (and its pid)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.exitcodes: list[list[int | None]] = []
        self.pids: list[list[int | None]] = []
        original = torch_dataloader._MultiProcessingDataLoaderIter._shutdown_workers

        def spy(iterator: Any) -> None:
            live = not iterator._shutdown
            original(iterator)
            if live:
                self.exitcodes.append([w.exitcode for w in iterator._workers])
                self.pids.append([w.pid for w in iterator._workers])

        monkeypatch.setattr(torch_dataloader._MultiProcessingDataLoaderIter, "_shutdown_workers", spy)


@pytest.mark.parametrize(("context", "persistent"), [("fork", False), ("fork", True), ("spawn", False)])
def test_an_error_stops_the_workers_before_it_reaches_the_caller(
    stalling_remote: tuple[str, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    context: str,
    persistent: bool,
) -> None:
    remote, _ = stalling_remote
    spy = _ShutdownSpy(monkeypatch)
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=4, download_retry=0)
    loader = StreamingDataLoader(
        ds, batch_size=4, num_workers=2, multiprocessing_context=context, persistent_workers=persistent
    )
    with pytest.raises(ObjectNotFound, match="shard"):
        for _ in loader:
            pass
    # Shut down before the error left the loader (not later by the garbage collector), and every
    # worker left by itself, including the one waiting for a stalled shard: none was terminated.
    assert spy.exitcodes == [[0, 0]]
    if persistent:
        assert loader._iterator is None  # the next epoch starts fresh workers


def test_ctrl_c_in_the_main_process_stops_workers_waiting_for_shards(
    stalled_remote: tuple[str, int], tmp_path: Path
) -> None:
    """SIGINT to the main process only (the worst case: the workers get no signal of their own),
    while both workers wait for stalled shards and the main process waits for a batch."""
    remote, _ = stalled_remote
    script = textwrap.dedent(
        f"""
        import json, sys
        from torch.utils.data import dataloader as torch_dataloader
        from astreaming import StreamingDataLoader, StreamingDataset

        exitcodes = []
        original = torch_dataloader._MultiProcessingDataLoaderIter._shutdown_workers
        def spy(iterator):
            live = not iterator._shutdown
            original(iterator)
            if live:
                exitcodes.append([w.exitcode for w in iterator._workers])
        torch_dataloader._MultiProcessingDataLoaderIter._shutdown_workers = spy

        # The first batch comes from the main process, before torch starts the workers (see
        # astreaming.batched.lead_batch): say when the main process waits for the workers' first batch.
        next_data = torch_dataloader._MultiProcessingDataLoaderIter._next_data
        def announce(iterator):
            print("WAITING", flush=True)
            return next_data(iterator)
        torch_dataloader._MultiProcessingDataLoaderIter._next_data = announce

        if __name__ == "__main__":
            ds = StreamingDataset(remote={remote!r}, local={str(tmp_path / "cache")!r}, batch_size=4)
            loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
            try:
                for i, _ in enumerate(loader):
                    print("BATCH", flush=True)
            except KeyboardInterrupt:
                print("EXITCODES", json.dumps(exitcodes), flush=True)
        """
    )
    script_path = tmp_path / "child.py"
    script_path.write_text(script)
    # Its own process group: should the test fail, the cleanup kills the workers too (an orphaned worker
    # would hold the pipes open and keep communicate() below waiting forever).
    proc = subprocess.Popen(
        [sys.executable, str(script_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("BATCH")
        assert proc.stdout.readline().startswith("WAITING")  # for the workers, which wait for stalled shards
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()  # reaps it and closes the pipes (else a ResourceWarning in a later test)
        raise
    lines = [line for line in out.splitlines() if line.startswith("EXITCODES")]
    assert lines, err
    assert json.loads(lines[0].split(" ", 1)[1]) == [[0, 0]], err


def test_a_waiting_worker_gives_up_when_its_stop_event_is_set() -> None:
    loop_thread = LoopThread()
    event = threading.Event()

    async def never(shard: int) -> int:
        await loop_thread.loop.create_future()  # a shard that never arrives
        return 0

    async def make() -> FetchScheduler:
        return FetchScheduler(never, max_in_flight=1, predownload=None)

    scheduler = loop_thread.call(make())
    waiter = ShardWaiter(scheduler, loop_thread)
    install_stop_event(event)
    try:
        threading.Timer(0.05, event.set).start()
        with pytest.raises(WorkersStopping, match="shard 3"):
            waiter.wait_ready(3, 0)
    finally:
        install_stop_event(None)
        loop_thread.call(scheduler.aclose())
        loop_thread.stop()


def test_an_abandoned_iterator_is_silent_at_interpreter_exit(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", NUM_SAMPLES, size_limit=200)
    script = textwrap.dedent(
        f"""
        from astreaming import StreamingDataset
        ds = StreamingDataset(remote={str(root)!r}, local={str(tmp_path / "cache")!r}, batch_size=1)
        sample = next(iter(ds))
        held = iter(ds)
        next(held)
        print(sample["id"])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.strip() == "0"
    assert done.stderr == ""


def test_spawned_workers_skip_the_interpreter_shutdown_after_an_error(
    stalling_remote: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawned worker ended by its loader runs the exit handlers registered since it started (the
    user's ``worker_init_fn``'s), then ends with ``os._exit(0)`` as a forked worker does: the exit
    handlers of modules it imported before starting and the interpreter's teardown of torch's heap
    (1 to 5 s per worker on a loaded machine, ``benchmarks/shutdown.py``) are skipped."""
    remote, _ = stalling_remote
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(exit_markers.VARIABLE, str(markers))
    spy = _ShutdownSpy(monkeypatch)
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=4, download_retry=0)
    loader = StreamingDataLoader(
        ds,
        batch_size=4,
        num_workers=2,
        multiprocessing_context="spawn",
        worker_init_fn=exit_markers.mark_late_at_exit,
    )
    with pytest.raises(ObjectNotFound, match="shard"):
        for _ in loader:
            pass
    assert spy.exitcodes == [[0, 0]]
    (workers,) = spy.pids
    assert sorted(p.name for p in markers.iterdir()) == sorted(f"{pid}.late" for pid in workers)


def test_the_exit_shortcut_only_after_a_clean_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os._exit(0)`` only when the worker's ``run()`` returned; an exception that escaped it (in flight
    while multiprocessing's exit function runs, in a ``finally``) leaves the exit code to Python."""
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    clean = WorkerExit(os.getppid(), "worker")
    clean.note_run_ended()
    _ExitShortcut(clean)()
    assert exits == [0]
    failed = WorkerExit(os.getppid(), "worker")
    with pytest.raises(ValueError):
        try:
            raise ValueError("run() failed")
        finally:
            failed.note_run_ended()
    _ExitShortcut(failed)()
    assert exits == [0]
    _ExitShortcut(WorkerExit(os.getppid(), "worker"))()  # multiprocessing never reported the end of run()
    _ExitShortcut(None)()  # not a multiprocessing child: nothing to report it
    assert exits == [0]


def test_worker_exit_handlers_are_registered_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader's worker init registers its exit handlers before anything else of the worker, so that
    they run last (atexit is LIFO): the shortcut, then ``gc.freeze`` before it (should the shortcut not
    be taken, the final collection skips torch's heap); and the hooks that see ``run()`` end and guard
    the exit of an orphan (see tests/reliability/test_orphaned_workers.py)."""
    registered: list[Any] = []
    finalizers: list[tuple[Any, Any]] = []
    seen_by_user: list[int] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(
        multiprocessing.util,
        "Finalize",
        lambda obj, callback, exitpriority: finalizers.append((callback, exitpriority)),
    )
    # As in a worker: a multiprocessing child whose guard is not installed yet.
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: multiprocessing.current_process())
    monkeypatch.setattr(workerexit, "_guard", None)
    init = _WorkerInit(threading.Event(), lambda worker_id: seen_by_user.append(len(registered)))
    try:
        init(1)  # what each worker of a StreamingDataLoader runs first
    finally:
        install_stop_event(None)
    shortcut, freeze = registered
    assert isinstance(shortcut, _ExitShortcut) and freeze is gc.freeze
    assert seen_by_user == [2]  # before the user's own init (and the dataset's runtime) could register
    run = shortcut.run
    assert run is not None
    (note, first), (guard, before_joins) = finalizers
    assert note == run.note_run_ended and first > 0
    assert guard == run.guard and -5 < before_joins < 0  # before multiprocessing joins feeder threads
    assert workerexit.guard_worker_exit() is run  # once per process (the dataset's runtime asks again)
    assert len(finalizers) == 2


class _Failing(StreamingDataset):
    """Its first sample raises ``error`` from inside the loader's ``next()``, as Ctrl-C arrives there."""

    error: type[BaseException] = KeyboardInterrupt

    def get_item(self, sample_id: int) -> dict[str, Any]:
        raise self.error


@pytest.mark.parametrize(("error", "frozen"), [(KeyboardInterrupt, True), (ValueError, False)])
def test_ctrl_c_through_the_loader_freezes_the_heap_for_the_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException], frozen: bool
) -> None:
    """After Ctrl-C the interpreter's final collections skip the heap (``gc.freeze`` at exit: 1 to 2 s of
    a loaded machine's exit, ``benchmarks/shutdown.py``); another error leaves the exit as it was."""
    registered: list[Any] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(dataloader_module, "_freezing", [])
    root = write_dataset(tmp_path / "ds", NUM_SAMPLES, size_limit=200)
    ds = _Failing(local=str(root), batch_size=4)
    ds.error = error
    try:
        with pytest.raises(error):
            for _ in StreamingDataLoader(ds, batch_size=4):
                pass
    finally:
        ds.close()
    assert registered.count(gc.freeze) == (1 if frozen else 0)
