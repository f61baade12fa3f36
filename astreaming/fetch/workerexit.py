"""A DataLoader worker whose main process died ends instead of waiting forever at its exit.

A worker sends its results through a ``multiprocessing`` queue: a feeder thread writes them into a pipe
that the main process reads. When the worker's ``run()`` ends, multiprocessing runs its exit finalizers
(``multiprocessing.util._exit_function``, in ``BaseProcess._bootstrap``; a forked worker then ends with
``os._exit``, a spawned one through the interpreter's shutdown): first those of priority >= 0, then the
rest by decreasing priority, among them ``Queue._finalize_join`` (priority -5), which joins the feeder
thread so that what was put is written first.

When its loader shuts the workers down, torch sets its ``done_event`` before sending the final ``None``,
and the worker cancels that join itself (``data_queue.cancel_join_thread()`` at the end of
``_worker_loop``): nothing it still holds would be read. But when the main process dies (``kill -9``,
``os._exit``, the OOM killer), torch's loop notices through its watchdog (the parent pid changed) and
returns with ``done_event`` unset: the join stays. Should the result pipe be full, the feeder thread is
blocked in a write that never completes (the pipe's read end is still open in this worker and its
siblings, so the write never fails either), and the orphan never exits: ``benchmarks/resume.py``, whose
children end with ``os._exit``, once left 188 of them on one machine.

:func:`guard_worker_exit` adds an exit finalizer of priority -1: after every finalizer of priority >= 0
(astreaming's runtime closes at 0), before the feeder joins. If the parent torch's watchdog watches is
gone by then, nobody will read anything this worker still has to write: it ends at once, with the exit
code its ``run()`` earned (0 after a clean return; as ``_bootstrap`` computes it, and with the traceback
``_bootstrap`` would print, after an exception). Otherwise the exit takes its usual course, every join
included, while a daemon thread watches the parent and ends the process the same way should it die
before the exit is over. Nothing changes for a worker whose main process lives: the main process reads
everything it reads today.

Why a worker whose ``run()`` returned cleanly is not ended before the joins even with its parent alive
(torch 2.13's ``_worker_loop`` returns on the final ``None``, through its watchdog, or after
``KeyboardInterrupt``): then the join of torch's queue does not wait. On ``None`` either ``done_event`` is
set (torch cancelled the join) or the worker's ``IterableDataset`` ended, and then the main process has
received the worker's last result (the end-of-iteration marker, sent after every batch; nothing is sent
after it), so the feeder has nothing left to write. After Ctrl-C the main process shuts the workers down
(it sets ``done_event``, waits up to 5 s for each, then terminates it). Ending there would gain nothing
and skip the rest of multiprocessing's exit: the joins of queues the worker's own code writes to, the
removal of its temp directory, the wait for its non-daemon threads.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import sys
import threading
import time
import traceback
from typing import NoReturn

__all__ = ["FIRST", "WorkerExit", "guard_worker_exit", "in_dataloader_worker"]

#: Above any exit priority multiprocessing or torch gives their own finalizers: runs first.
FIRST = 1 << 30
#: After every exit finalizer of priority >= 0, before multiprocessing joins queue feeder threads (-5).
_BEFORE_JOINS = -1
#: Seconds between two looks at the parent while the exit finishes (only then: a few milliseconds).
_WATCH_EVERY = 0.1


class WorkerExit:
    """How this worker process's ``run()`` ended, and the guard of its exit (see the module docstring).

    Args:
        parent_pid: The process whose death makes this one an orphan: its parent when the guard was
            installed, the same process torch's watchdog watches (``os.getppid()`` at the worker's start).
        name: The process's name, for the traceback of a failed ``run()``.
    """

    def __init__(self, parent_pid: int, name: str) -> None:
        self.pid = os.getpid()
        self.parent_pid = parent_pid
        self.name = name
        #: multiprocessing reported the end of ``run()`` (:meth:`note_run_ended`).
        self.ended = False
        #: The exception that escaped ``run()``, if any.
        self.error: BaseException | None = None

    def note_run_ended(self) -> None:
        """The first exit finalizer: multiprocessing calls it right after ``run()``, in a ``finally``
        where an exception that escaped ``run()`` is still in flight."""
        self.ended = True
        self.error = sys.exc_info()[1]

    @property
    def clean(self) -> bool:
        """``run()`` returned (torch's worker loop ends that way after a shutdown, a watchdog exit and
        Ctrl-C alike)."""
        return self.ended and self.error is None

    def exit_code(self) -> int:
        """The exit code ``BaseProcess._bootstrap`` gives after this ``run()``."""
        if not self.ended:
            return 1
        error = self.error
        if error is None:
            return 0
        if isinstance(error, SystemExit):
            if error.code is None:
                return 0
            return error.code if isinstance(error.code, int) else 1
        return 1

    def parent_gone(self) -> bool:
        """Whether the parent died (this process was handed to another parent)."""
        return os.getppid() != self.parent_pid

    def guard(self) -> None:
        """The exit finalizer before the feeder joins: end now if orphaned, else watch the parent."""
        if self.parent_gone():
            self.exit_now()
        else:
            threading.Thread(target=self._watch, name="astreaming-exit-guard", daemon=True).start()

    def _watch(self) -> None:
        # A daemon thread: the process's normal end (os._exit or the interpreter's shutdown) ends it.
        while not self.parent_gone():
            time.sleep(_WATCH_EVERY)
        self.exit_now()

    def exit_now(self) -> NoReturn:
        """End the process with :meth:`exit_code`, skipping what is left of the exit (the feeder joins)."""
        error = self.error
        if error is not None and not isinstance(error, SystemExit):
            # What _bootstrap prints for a failed run(), which it no longer gets the chance to.
            with contextlib.suppress(Exception):
                sys.stderr.write(f"Process {self.name}:\n")
                traceback.print_exception(error)
        elif isinstance(error, SystemExit) and error.code is not None and not isinstance(error.code, int):
            with contextlib.suppress(Exception):
                sys.stderr.write(f"{error.code}\n")
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(self.exit_code())


_guard: WorkerExit | None = None


def guard_worker_exit() -> WorkerExit | None:
    """Install the exit guard of this multiprocessing child (once per process; None in a process that
    multiprocessing did not start, where nothing is to be guarded) and return its record of ``run()``."""
    global _guard
    if multiprocessing.parent_process() is None:
        return None
    if _guard is not None and _guard.pid == os.getpid():  # not a forked copy of another process's
        return _guard
    guard = WorkerExit(os.getppid(), multiprocessing.current_process().name)
    multiprocessing.util.Finalize(None, guard.note_run_ended, exitpriority=FIRST)
    multiprocessing.util.Finalize(None, guard.guard, exitpriority=_BEFORE_JOINS)
    _guard = guard
    return guard


def in_dataloader_worker() -> bool:
    """Whether this process is a torch DataLoader worker (torch is never imported here: a worker has
    imported ``torch.utils.data`` already, since its loop lives there)."""
    data = sys.modules.get("torch.utils.data")
    get_worker_info = getattr(data, "get_worker_info", None)
    return get_worker_info is not None and get_worker_info() is not None
