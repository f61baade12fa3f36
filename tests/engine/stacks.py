"""Stack dumps of a child job that outlives its timeout: where a rare hang sits, in the failure itself.

A job script registers ``faulthandler.register(signal.SIGUSR1, all_threads=True)`` first thing (the
scripts run standalone, so they do not import this module); the test starts it with :func:`start` (its
own process group) and waits with :func:`communicate`. On timeout every process of the group (the job and
its forked DataLoader workers, which inherit the handler) writes all its threads' Python stacks to the
job's stderr before the group is killed, and the ``TimeoutError`` carries that stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any

__all__ = ["communicate", "start"]

_DUMP = signal.SIGUSR1


def start(argv: list[str], *, stdout: int = subprocess.PIPE, **kwargs: Any) -> subprocess.Popen[str]:
    """Start a job in its own process group, its stderr (and by default stdout) captured as text."""
    return subprocess.Popen(
        argv, stdout=stdout, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )


def communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout)``; on timeout, the group's stacks, then the group killed.

    Raises:
        TimeoutError: the job did not end in time; the message holds the end of its stderr (stacks).
    """
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, _DUMP)
            time.sleep(2)  # lets every process of the group write its stacks (diagnostics only)
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise TimeoutError(f"job still running after {timeout} s; its stacks:\n{err[-20000:]}") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
