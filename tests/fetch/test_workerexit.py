"""The exit guard of a DataLoader worker (``astreaming/fetch/workerexit.py``): when its parent is gone it
ends the process with the exit code its ``run()`` earned, at once or as soon as the parent dies during
the exit; otherwise the exit goes on. ``os._exit`` is replaced by a recorder; the end-to-end cases, real
workers of a killed main process, are in tests/reliability/test_orphaned_workers.py."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from astreaming.fetch.workerexit import WorkerExit


class _Exits:
    """Records ``os._exit`` calls instead of ending the test process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()
        monkeypatch.setattr(os, "_exit", self)
        monkeypatch.setattr(logging, "shutdown", lambda: None)  # the test process's logging stays up

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def _ended(error: BaseException | None, parent_pid: int) -> WorkerExit:
    """A record of a ``run()`` that returned (``error`` None) or raised ``error``."""
    run = WorkerExit(parent_pid, "Worker-1")
    if error is None:
        run.note_run_ended()
        return run
    try:
        raise error
    except BaseException:
        run.note_run_ended()  # as multiprocessing calls it: in a finally, the exception in flight
    return run


@pytest.mark.parametrize(
    ("error", "code"),
    [(None, 0), (ValueError("boom"), 1), (SystemExit(3), 3), (SystemExit(None), 0), (SystemExit("bye"), 1)],
)
def test_an_orphan_ends_at_once_with_the_code_its_run_earned(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException | None,
    code: int,
) -> None:
    exits = _Exits(monkeypatch)
    run = _ended(error, parent_pid=-1)  # not this process's parent: the parent is gone
    run.guard()
    assert exits.codes == [code]
    err = capsys.readouterr().err
    if isinstance(error, ValueError):
        # What multiprocessing prints for a failed run(), which it no longer gets the chance to.
        assert err.startswith("Process Worker-1:\n") and "ValueError: boom" in err
    elif isinstance(error, SystemExit) and error.code == "bye":
        assert err == "bye\n"
    else:
        assert err == ""


def test_a_run_never_reported_to_have_ended_is_not_a_success(monkeypatch: pytest.MonkeyPatch) -> None:
    exits = _Exits(monkeypatch)
    WorkerExit(-1, "Worker-1").guard()
    assert exits.codes == [1]


def test_with_its_parent_alive_the_exit_goes_on_until_it_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    exits = _Exits(monkeypatch)
    run = _ended(None, parent_pid=os.getppid())
    run.guard()  # returns: multiprocessing goes on with the feeder joins
    assert exits.codes == []
    assert not exits.called.is_set()
    run.parent_pid = -1  # the parent dies while a join waits
    assert exits.called.wait(60)
    assert exits.codes == [0]
