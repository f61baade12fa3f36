"""A process's identity that outlives a recycled pid: ``"<pid>:<start time>"``.

The ledger keeps the next-epoch hints of a DataLoader worker that exited cleanly for as long as the process
that will start the next epoch's workers (the worker's parent) lives. A pid alone could be reused by an
unrelated process; the pid plus the kernel's start time of that process (``/proc/<pid>/stat``, field 22)
cannot. Where ``/proc`` is missing the tag holds the pid only, and liveness is the pid's existence (the
hint's expiry bounds it anyway).
"""

from __future__ import annotations

import os

__all__ = ["process_alive", "process_tag"]


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces: count fields after the last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def process_tag(pid: int) -> str:
    """The identity of running process ``pid``."""
    return f"{pid}:{_start_time(pid)}"


def process_alive(tag: str) -> bool:
    """Whether the process ``tag`` names (see :func:`process_tag`) still runs (False for a bad tag)."""
    pid_text, _, start = tag.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return not start or _start_time(pid) == start
