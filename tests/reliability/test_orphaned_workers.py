"""A DataLoader worker whose main process dies (``kill -9``, ``os._exit``, the OOM killer) ends by itself.

Torch's worker loop notices that its parent is gone and returns, but the worker's exit then joins the
feeder thread of its result queue (multiprocessing's ``Queue._finalize_join``), which waits for a write
into a full pipe that nobody will drain: the orphan never exits (``benchmarks/resume.py``, whose children
end with ``os._exit``, once left 188 of them behind). astreaming guards the exit of its workers
(``astreaming/fetch/workerexit.py``): StreamingDataLoader's and, through the dataset's runtime, those of a
plain torch DataLoader over a StreamingDataset.

Each case runs a real main process, lets its two workers fill the result pipe (every batch is larger
than a pipe's buffer and the main process stops reading), kills it with SIGKILL and waits until every
worker is gone. The deadline is one only a hang reaches (a worker notices its parent's death within
torch's 5 s status interval); the cleanup kills whatever is left, so a failure leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from astreaming import MDSWriter

pytestmark = pytest.mark.timeout(600)

#: Seconds to wait for the workers to fill the pipe, and then for them to be gone: reached only by a hang.
DEADLINE = 120.0
NUM_SAMPLES = 32
#: Bytes per sample: a batch of 4 (1.2 MB) is far beyond a pipe's buffer (64 KB) and one batch per group.
SAMPLE_BYTES = 300_000
MARKS = "ASTREAMING_TEST_ORPHAN_MARKS"

# The main process. Its collate_fn runs in the workers and leaves a file <pid>.<n> for each batch made,
# just before the worker queues it for the main process (importable by spawned workers, which import
# this script as __mp_main__).
SCRIPT = textwrap.dedent(
    f"""
    import os, sys, threading
    from pathlib import Path

    def mark(samples):
        folder = Path(os.environ[{MARKS!r}])
        made = len(list(folder.glob(f"{{os.getpid()}}.*")))
        (folder / f"{{os.getpid()}}.{{made}}").touch()
        return samples

    if __name__ == "__main__":
        from torch.utils.data import DataLoader
        from astreaming import StreamingDataLoader, StreamingDataset

        kind, context, data = sys.argv[1:4]
        ds = StreamingDataset(local=data, batch_size=4)
        make = StreamingDataLoader if kind == "streaming" else DataLoader
        loader = make(ds, batch_size=4, num_workers=2, collate_fn=mark, multiprocessing_context=context)
        batches = iter(loader)
        next(batches)  # then reads no more: the workers' next batches fill the result pipe
        print("READING STOPPED", flush=True)
        threading.Event().wait()  # until killed
    """
)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """The state and start time of process ``pid`` (None if there is none)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def _running(pid: int, started: str) -> bool:
    """Whether the process started at ``started`` still runs as ``pid`` (an exited, unreaped orphan, a
    zombie, has ended; a new process that reuses the pid is another one)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[1] == started and stat[0] not in ("Z", "X")


@pytest.fixture(scope="module")
def large_samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("orphans") / "ds"
    with MDSWriter(out=str(out), columns={"id": "int", "blob": "bytes"}, size_limit=1 << 21) as writer:
        for i in range(NUM_SAMPLES):
            writer.write({"id": i, "blob": bytes([i]) * SAMPLE_BYTES})
    return out


@pytest.fixture
def main_process(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Holds the main process started by a test; kills its whole process group (the workers included,
    should any be left) at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


CASES = [("streaming", "fork"), ("streaming", "spawn"), ("torch", "fork"), ("torch", "spawn")]


@pytest.mark.parametrize(("kind", "context"), CASES)
def test_workers_end_when_their_main_process_is_killed(
    large_samples: Path, tmp_path: Path, main_process: list[subprocess.Popen[bytes]], kind: str, context: str
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "tmp").mkdir()
    script = tmp_path / "main.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), **{MARKS: str(marks)})
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        # Its own process group: the cleanup kills whatever of it is left, the workers included.
        proc = subprocess.Popen(
            [sys.executable, str(script), kind, context, str(large_samples)],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    main_process.append(proc)

    # Each worker made the two batches torch asks of it at first (prefetch_factor=2); the main process
    # read one batch at most: the rest wait in the workers' queues, and the pipe is full.
    deadline = time.monotonic() + DEADLINE
    made: dict[int, int] = {}
    while len(made) < 2 or min(made.values()) < 2:
        assert proc.poll() is None, (tmp_path / "err").read_text()
        assert time.monotonic() < deadline, f"the workers made {made}: {(tmp_path / 'err').read_text()}"
        time.sleep(0.05)
        made = {}
        for mark in marks.iterdir():
            pid = int(mark.name.split(".")[0])
            made[pid] = made.get(pid, 0) + 1
    workers = {pid: stat[1] for pid in made if (stat := _proc_stat(pid)) is not None}
    assert len(workers) == 2 and all(_running(pid, started) for pid, started in workers.items())

    proc.kill()
    proc.wait()
    deadline = time.monotonic() + DEADLINE
    left = dict(workers)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {pid: started for pid, started in workers.items() if _running(pid, started)}
    assert not left, f"workers {sorted(left)} outlived their main process: {(tmp_path / 'err').read_text()}"
