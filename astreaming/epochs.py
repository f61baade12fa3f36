"""Which epoch an iteration runs, and from which sample: shared by a dataset and its worker copies.

A ``StreamingDataset`` is copied into every DataLoader worker (fork or spawn), and persistent workers
keep their copy for the whole run. ``set_epoch``, ``load_state_dict`` and "the previous epoch was
completed" must still reach every copy. mosaicml-streaming keeps this in POSIX shared memory (which
leaks on crashes) and advances the epoch on every ``__iter__`` (so probing iterations shift epochs and
loaded checkpoints get silently ignored, reference hazard 18).

Here the state is one small JSON file per dataset instance, read at the start of each iteration and
updated under ``flock``; the kernel releases the lock of a dead process, and nothing lives in
``/dev/shm``. A process killed before its datasets' finalizers ran (``kill -9``, a preempted job's
``SIGTERM``, ``os._exit``) leaves their files behind. Each process therefore names its files after a
token of its own and holds a shared ``flock`` on ``<token>.alive`` for its life (forked workers share
it); the first dataset a process makes in a control directory removes the files of every token whose
``.alive`` nobody holds any more. The rules:

* ``set_epoch(n)`` pins the epoch of every following iteration until it is set again (the torch
  ``DistributedSampler`` convention).
* Otherwise an iteration runs ``next_epoch``, which advances only when an iteration of the current
  epoch ran to its end (an abandoned or probing iteration does not advance it).
* A loaded checkpoint applies to its epoch: that epoch starts at ``sample_in_epoch``; it is never
  ignored as stale.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import tempfile
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EpochControl", "EpochStart"]


@dataclass(frozen=True)
class EpochStart:
    """Where one iteration starts: its epoch and the samples of that epoch already consumed."""

    epoch: int
    sample_in_epoch: int
    # The last loaded checkpoint, if any. Its order fields (num_canonical_nodes, shuffle_seed,
    # initial_physical_nodes) stay in force for later epochs too, as on a mosaic dataset object.
    resume: dict[str, Any] | None


class EpochControl:
    """Cross-process epoch and resume state of one dataset instance (picklable, no live resources)."""

    def __init__(self, root: Path | None = None) -> None:
        base = root if root is not None else Path(tempfile.gettempdir()) / "astreaming-control"
        base.mkdir(parents=True, exist_ok=True)
        self.path = base / f"{_owner_token(base)}.{uuid.uuid4().hex}.json"
        self._owner_pid = os.getpid()
        self._write({"next_epoch": 0, "explicit_epoch": None, "resume": None, "last_started": None})
        # Only the creating process removes the file; worker copies are unpickled, never constructed.
        weakref.finalize(self, _remove_files, self.path, self._owner_pid)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_owner_pid": self._owner_pid}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._owner_pid = state["_owner_pid"]

    # -- reads and writes --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A separate, never-unlinked lock file: the state file itself is replaced by rename.
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        with open(self.path, encoding="utf-8") as file:
            state: dict[str, Any] = json.load(file)
        return state

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self.path)

    def _update(self, **changes: Any) -> dict[str, Any]:
        with self._locked():
            state = self._read()
            state.update(changes)
            self._write(state)
        return state

    # -- the rules ---------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch of every following iteration (in every worker)."""
        self._update(explicit_epoch=int(epoch))

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Make the next iteration resume ``checkpoint`` (its epoch, from its ``sample_in_epoch``)."""
        epoch = int(checkpoint["epoch"])
        # A checkpoint supersedes an earlier set_epoch: it says exactly where training stands, also to
        # a checkpoint saved before the next iteration starts (`current`), whatever ran before the load.
        self._update(resume=dict(checkpoint), next_epoch=epoch, explicit_epoch=None, last_started=None)

    def start(self) -> EpochStart:
        """Decide the epoch and first sample of an iteration that begins now, and record it."""
        with self._locked():
            state = self._read()
            explicit = state["explicit_epoch"]
            epoch = int(explicit) if explicit is not None else int(state["next_epoch"])
            resume = state["resume"]
            applies = resume is not None and int(resume["epoch"]) == epoch
            state["last_started"] = epoch
            self._write(state)
        return EpochStart(epoch, int(resume["sample_in_epoch"]) if applies else 0, resume)

    def complete(self, epoch: int, worker: int = 0, num_workers: int = 1) -> None:
        """Record that ``worker`` of ``num_workers`` ran its part of ``epoch`` to the end.

        The epoch counts as completed (later iterations run the next one) once every worker of the
        rank finished it: a worker with a small share must not move the epoch on while its siblings
        have not even started theirs.
        """
        with self._locked():
            state = self._read()
            done: dict[str, list[int]] = state.setdefault("done", {})
            key = f"{epoch}/{num_workers}"
            finished = sorted(set(done.get(key, [])) | {worker})
            if len(finished) >= num_workers:
                state["next_epoch"] = max(int(state["next_epoch"]), epoch + 1)
                done.pop(key, None)
            else:
                done[key] = finished
            self._write(state)

    def upcoming(self) -> int:
        """The epoch an iteration starting now would run."""
        state = self._read()
        explicit = state["explicit_epoch"]
        return int(explicit) if explicit is not None else int(state["next_epoch"])

    def current(self) -> EpochStart:
        """The epoch of the latest iteration started since the last load (else the one the next would
        run) and its offset."""
        state = self._read()
        started = state["last_started"]
        if started is None:
            explicit = state["explicit_epoch"]
            started = explicit if explicit is not None else state["next_epoch"]
        epoch = int(started)
        resume = state["resume"]
        applies = resume is not None and int(resume["epoch"]) == epoch
        return EpochStart(epoch, int(resume["sample_in_epoch"]) if applies else 0, resume)


_ALIVE = ".alive"

#: A process's token: its pid and 8 hex digits (``_owner_token``).
_TOKEN = re.compile(r"[0-9]+-[0-9a-f]{8}")

#: Per control directory, this process's token and the descriptor holding its ``.alive`` lock (with the
#: pid that took it: a forked child inherits the entry, and takes a token of its own).
_held: dict[Path, tuple[int, str, int]] = {}


def _owner_token(base: Path) -> str:
    """This process's token in ``base``; the first call in a process sweeps ``base`` and takes it."""
    held = _held.get(base)
    if held is not None and held[0] == os.getpid():
        return held[1]
    sweep_stale(base)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _held[base] = (os.getpid(), token, _hold_alive(base / f"{token}{_ALIVE}"))
    # A process that exits normally leaves nothing (its datasets' finalizers remove their own files).
    atexit.register(_let_go, base)
    return token


def _let_go(base: Path) -> None:
    held = _held.get(base)
    if held is None or held[0] != os.getpid():
        return  # a forked child's copy of its parent's entry
    del _held[base]
    with contextlib.suppress(FileNotFoundError):
        (base / f"{held[1]}{_ALIVE}").unlink()
    os.close(held[2])


def _hold_alive(path: Path) -> int:
    """Create ``path`` holding a shared ``flock`` on it; returns its descriptor (open until exit).

    The lock is taken on a temporary name and the file renamed into place, so that a sweep, which only
    looks at ``*.alive``, never finds it unheld while its owner lives. Forked children share the lock
    (it belongs to the open file, which they inherit): it ends when the last of them exits.
    """
    tmp = path.with_name(f"{path.name}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return fd


def sweep_stale(base: Path) -> int:
    """Remove the files of the processes gone from ``base``; returns how many processes' files.

    A process is gone when nobody holds its ``.alive`` file's lock: it and every forked child of it
    exited. Its datasets' states, their lock files and statistics go first, the ``.alive`` file last,
    while this process holds it. Files of a token with no ``.alive`` file at all go too: its owner exited
    normally (removing it) and something wrote after its datasets' finalizers had run. Files named
    otherwise (made before tokens existed) are left alone: nothing tells whether their owner lives.
    """
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    alive = {name[: -len(_ALIVE)] for name in names if name.endswith(_ALIVE)}
    orphans: dict[str, list[str]] = {}
    for name in names:
        token = name.split(".", 1)[0]
        # An .alive.tmp is a process taking its token (_hold_alive) right now.
        if token not in alive and not name.endswith(".tmp") and _TOKEN.fullmatch(token):
            orphans.setdefault(token, []).append(name)
    # A process makes its files only once its .alive is in place and removes that last, so a token
    # whose .alive exists now is alive whatever a listing made during a rename showed.
    orphans = {t: files for t, files in orphans.items() if not (base / f"{t}{_ALIVE}").exists()}
    removed = 0
    for token in alive:
        try:
            fd = os.open(base / f"{token}{_ALIVE}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # swept meanwhile by another process, or another user's
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: the process (or a forked child of it) lives
            # Listed again under the lock: files made since the listing above go too.
            files = [name for name in os.listdir(base) if name.startswith(f"{token}.")]
            _unlink(base, sorted(files, key=lambda name: name.endswith(_ALIVE)))  # .alive last
            removed += 1
        finally:
            os.close(fd)
    for files in orphans.values():
        _unlink(base, files)
    return removed + len(orphans)


def _unlink(base: Path, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            (base / name).unlink()


def _remove_files(path: Path, owner_pid: int) -> None:
    if os.getpid() != owner_pid:
        return
    # The state, its lock, and the statistics each process published (astreaming.engine.stats).
    for name in (path, Path(f"{path}.lock"), *path.parent.glob(f"{path.name}.stats.*.json")):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()
