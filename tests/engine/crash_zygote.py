"""A fork server for the crash matrix: imports astreaming and torch once, then forks one job per request.

Importing torch costs seconds on a loaded machine, and the matrix runs two jobs per case; forking each
job from this single-threaded process costs milliseconds and gives the same fresh process a real run
starts with (its own session, environment and crash point, armed after the fork).

Protocol (JSON lines): the test writes ``{"request", "result", "log", "env"}`` to stdin; this server
forks the job, answers ``{"pid": ...}`` at once and ``{"code": ...}`` (as ``Popen.returncode``: -9 for
SIGKILL) when it ends. EOF on stdin ends the server.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from pathlib import Path

import torch.utils.data  # noqa: F401 - imported once, here, for every job

import astreaming.crashpoints
from astreaming import StreamingDataLoader, StreamingDataset  # noqa: F401 - the same

sys.path.insert(0, str(Path(__file__).parent))
import crash_job


def child(job: dict[str, object]) -> None:
    """Run one job in the forked child; never returns."""
    code = 1
    try:
        os.setsid()  # its DataLoader workers share its group: the test reaps them all
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        log = os.open(str(job["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.update(job["env"])  # type: ignore[arg-type]
        astreaming.crashpoints.arm_from_environment()
        request = json.loads(Path(str(job["request"])).read_text())
        result = crash_job.run(request)
        Path(str(job["result"])).write_text(json.dumps(result))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def answer(message: dict[str, int]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    # Forking a process with threads could copy a lock held by one of them; there are none to copy.
    assert threading.active_count() == 1, threading.enumerate()
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(job)
        answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        answer({"code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
