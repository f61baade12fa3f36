"""A process-wide "stop waiting" signal for DataLoader workers that are shutting down.

A worker blocked on a shard (a slow link, a stalled server) does not see torch's own shutdown event:
torch only checks it between samples, so at shutdown (an error in the main process, Ctrl-C) such a
worker was killed at torch's 5 s join timeout. ``StreamingDataLoader`` gives each of its workers an
event (installed here by its ``worker_init_fn``) and sets it before shutting them down; a shard wait
in the worker watches it and gives up at once.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["StopEvent", "WorkersStopping", "install_stop_event", "stop_event"]


class StopEvent(Protocol):
    """What the signal needs of an event: ``multiprocessing.Event`` and ``threading.Event`` fit."""

    def is_set(self) -> bool: ...


class WorkersStopping(Exception):
    """Raised in a worker's shard wait when its DataLoader is shutting the workers down."""


_event: StopEvent | None = None


def install_stop_event(event: StopEvent | None) -> None:
    """Make ``event`` the signal that this process (a DataLoader worker) must stop waiting."""
    global _event
    _event = event


def stop_event() -> StopEvent | None:
    """The installed signal, if any."""
    return _event
