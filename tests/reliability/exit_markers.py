"""Exit handlers that leave a file behind when they run, for the shutdown tests' spawned workers.

Imported by a spawned DataLoader worker when it unpickles :func:`mark_late_at_exit` (its
``worker_init_fn``), that is before the worker starts: the handler registered at import is one a
module imported by the worker registers, the one :func:`mark_late_at_exit` registers is the user's own.
Each writes ``<pid>.<when>`` into the directory named by ``ASTREAMING_TEST_EXIT_MARKERS`` (nothing
when it is unset, as in the test process itself at its exit).
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

VARIABLE = "ASTREAMING_TEST_EXIT_MARKERS"


def _mark(when: str) -> None:
    folder = os.environ.get(VARIABLE)
    if folder:
        (Path(folder) / f"{os.getpid()}.{when}").touch()


def mark_late_at_exit(worker_id: int) -> None:
    """A ``worker_init_fn`` registering an exit handler of its own."""
    atexit.register(_mark, "late")


atexit.register(_mark, "early")
