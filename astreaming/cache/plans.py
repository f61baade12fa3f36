"""Plan artefacts shared by the processes of a node through the cache directory (DESIGN §9).

An artefact (a dict of arrays, see :mod:`astreaming.order.store`) is a directory ``<root>/<key>/`` of
``.npy`` files. The first process that needs it computes it while holding ``flock`` on
``<root>/<key>.lock``, writes it to a temp directory and renames that into place, so the directory's
existence means it is complete; everyone maps the files read-only (the kernel shares the pages). No
shared memory, no barrier: a process that dies while computing releases its flock with its descriptors,
and the next one removes its temp directory and computes again. When the directory cannot be written
(a read-only cache), artefacts are kept in the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["FilePlanStore"]

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]

_TMP_MARK = ".tmp-"
#: Seconds after which an artefact nobody published or read again is removed (a stopped epoch's).
STALE_AFTER = 2 * 24 * 3600


class FilePlanStore:
    """Artefacts under ``root``, computed once per node and memory-mapped.

    Args:
        root: The directory of artefacts (created on first use), e.g. ``<local>/.astreaming/plans``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._private: dict[str, Arrays] | None = None  # set when the directory is not usable
        self._swept = False  # stale artefacts are removed once per process

    def __getstate__(self) -> dict[str, object]:
        return {"root": self.root}  # a worker starts with its own fallback state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(Path(str(state["root"])))  # type: ignore[misc]

    def get(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        """The artefact ``key``: mapped from the cache directory, computed there first if missing."""
        if self._private is not None:
            if key not in self._private:
                self._private[key] = compute()
            return self._private[key]
        final = self.root / key
        if not self._swept:
            self._swept = True
            _remove_stale(self.root, time.time())
        found = _load(final)
        if found is not None:
            return found
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with _locked(self.root / f"{key}.lock"):
                found = _load(final)  # computed by another process while we waited
                if found is None:
                    _remove_temps(self.root, key)
                    _publish(final, compute())
                    found = _load(final)
        except OSError as exc:
            log.warning("plan cache %s is not usable (%s): plans stay in this process", self.root, exc)
            self._private = {}
            return self.get(key, compute)
        if found is None:  # discarded by another process between the rename and our read
            found = compute()
        return found

    def discard(self, key: str) -> None:
        """Delete artefact ``key`` (mapped copies stay valid; a later reader computes it again)."""
        if self._private is not None:
            self._private.pop(key, None)
            return
        _remove(self.root / key)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``flock`` on ``path``, which is unlinked on release (no lock files pile up).

    A waiter may lock a file its previous holder already unlinked: it then holds nothing, so a lock
    counts only while the locked descriptor still is the file at ``path`` (else try again).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks; the kernel releases it if the holder dies
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        # Unlock explicitly: a process forked meanwhile shares the descriptor, and closing ours alone would
        # leave the lock held until that child exits.
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _load(final: Path) -> Arrays | None:
    try:
        names = sorted(p for p in os.listdir(final) if p.endswith(".npy"))
        # Plain read-only views of the mappings: np.memmap's per-item indexing is slow.
        return {name[:-4]: np.asarray(np.load(final / name, mmap_mode="r")) for name in names}
    except (FileNotFoundError, NotADirectoryError):
        return None


def _publish(final: Path, arrays: Arrays) -> None:
    temp = final.with_name(f"{final.name}{_TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}")
    temp.mkdir()
    try:
        for name, array in arrays.items():
            np.save(temp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _remove(final: Path) -> None:
    """Delete an artefact: renamed away first, so readers never see it half deleted."""
    gone = final.with_name(f"{final.name}{_TMP_MARK}gone-{os.urandom(4).hex()}")
    with contextlib.suppress(OSError):
        os.rename(final, gone)
        shutil.rmtree(gone, ignore_errors=True)


def _remove_stale(root: Path, now: float) -> None:
    """Artefacts untouched for :data:`STALE_AFTER` seconds: epochs that were stopped and never resumed."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if _TMP_MARK not in entry.name and entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER:
                        _remove(Path(entry.path))


def _remove_temps(root: Path, key: str) -> None:
    """Temp directories of ``key`` left by dead producers or discards (call while holding its lock)."""
    prefix = f"{key}{_TMP_MARK}"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            if entry.name.startswith(prefix):
                shutil.rmtree(entry.path, ignore_errors=True)
