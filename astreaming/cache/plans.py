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

from astreaming.cache.publish import names_same_file

__all__ = ["FilePlanStore"]

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]

_TMP_MARK = ".tmp-"
#: Seconds after which an artefact nobody published or read again is removed (a stopped epoch's).
STALE_AFTER = 2 * 24 * 3600
#: An artefact this process computed and published is used as computed up to this size: mapping back
#: what it just wrote costs a file open and header parse per array (about 7 ms for a py1e epoch's draws,
#: on the critical path of a cold resume); a larger one (a window, a whole permutation) is mapped, so
#: its pages are the page cache's that the node's other processes share, not a private copy.
KEEP_BYTES = 1 << 20


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
        private = self._private
        if private is not None:
            # One lookup, no check-then-read: another thread of this process (the next epoch's hint)
            # may discard a key between the two.
            found = private.get(key)
            if found is None:
                found = private.setdefault(key, compute())
            return found
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
                    computed = compute()
                    _publish(final, computed)
                    found = _kept(computed) if _nbytes(computed) <= KEEP_BYTES else _load(final)
        except OSError as exc:
            log.warning("plan cache %s is not usable (%s): plans stay in this process", self.root, exc)
            self._private = {}
            return self.get(key, compute)
        if found is None:  # discarded by another process between the rename and our read
            found = compute()
        return found

    def peek(self, key: str) -> Arrays | None:
        """The artefact ``key`` if a process of the node computed it (mapped), else None."""
        if self._private is not None:
            return self._private.get(key)
        return _load(self.root / key)

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
    """The artefact at ``final``, whole, or None if it is missing or was discarded while being read.

    A discard (any process: a worker whose plan ran to its end) renames the directory away, then deletes
    its files. A reader that opened the directory before the rename and read its entries after the
    deletion gets an empty (or partial) listing: returned as the artefact, that was a dict without the
    arrays its users index (issue 8: ``KeyError: 'perm'`` in a DataLoader worker, 1 soak run in 40).
    So the directory is listed through a descriptor of our own, which keeps its inode from being reused,
    and the artefact counts only if ``final`` still names that directory once every file is mapped: a
    directory is only ever renamed away before anything in it is deleted, and never renamed back.
    """
    try:
        fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        names = sorted(p for p in os.listdir(fd) if p.endswith(".npy"))
        # Plain read-only views of the mappings: np.memmap's per-item indexing is slow.
        arrays = {name[:-4]: np.asarray(np.load(final / name, mmap_mode="r")) for name in names}
        if not names_same_file(final, fd):
            return None  # discarded meanwhile (and maybe published again: the caller looks again)
        with contextlib.suppress(OSError):  # a read-only plan cache: it is swept by its writer only
            # Read now: the sweep of artefacts untouched for days (a new process's first get) goes by
            # this time, and must not delete one in use since its publication days ago (a long epoch).
            os.utime(fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(fd)
    return arrays


def _nbytes(arrays: Arrays) -> int:
    return sum(int(a.nbytes) for a in arrays.values())


def _kept(arrays: Arrays) -> Arrays:
    """Read-only contiguous views of freshly computed arrays, as a mapped artefact's are read-only."""
    kept = {}
    for name, array in arrays.items():
        view = np.ascontiguousarray(array).view()
        view.flags.writeable = False
        kept[name] = view
    return kept


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
