"""Claim a local output directory for one writer: refuse or replace what is there, and hold it.

mosaic's writers ``rmtree`` a non-empty output when ``exist_ok=True`` and check nothing else. That
deletes whatever the directory holds (a user's files, a cache below it, the current directory itself)
and lets two writers share a directory, each emptying or overwriting the other's shards. Here:

- ``exist_ok=True`` replaces a previous *output*: the directory's entries must all be files a writer
  or a conversion leaves (``index.json``, ``shard.NNNNN.*`` files, their temporary files, an image
  folder's ``classes.json``) or partitions made only of those: directories named as conversions name
  them (``part-NNNNN``, ``NNNNN-<call>-<attempt>``, digits) or that the index references (a merge of
  partitions named otherwise). A cache below ``out``, a checkout or anything else is refused
  with :class:`OutputExistsError` naming it, and nothing is deleted. The directory itself is kept (its
  contents are removed), so ``out="."`` leaves the process in a valid working directory.
- while a writer (or a conversion) has the directory, it holds an exclusive ``flock`` on it; a second
  writer is refused with :class:`OutputInUseError` naming the path instead of emptying or interleaving
  with the first one's files. ``exist_ok=True`` leaves a sub-directory that another writer holds (a
  partition still being written) to that writer instead of deleting it under it. The lock goes with the
  process (a killed writer leaves no stale lock).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from astreaming.errors import ConfigError

__all__ = [
    "OutputClaim",
    "OutputExistsError",
    "OutputInUseError",
    "check_output",
    "claim_output",
    "is_partition_name",
]

# Files a writer leaves: shards and their .meta files (any compression extension), the index and its
# temporary files (write_text_atomic), and the classes.json an image-folder conversion adds.
_OWN_FILE = re.compile(
    r"index\.json|\.+index\.json\..*\.tmp|classes\.json|shard\.\d{5,}\.[A-Za-z0-9]+(\.meta)?(\.[A-Za-z0-9]+)?"
)

# Partition directories: astreaming convert's part-NNNNN, dataframe_to_mds's NNNNN-<call>-<attempt>, and
# mosaic's numbered ones (its dataframe_to_mds names them by task attempt id).
_PARTITION = re.compile(r"part-\d{5,}|\d+(-[0-9a-f]+-\d+)?")


class OutputExistsError(ConfigError, FileExistsError):
    """The output directory is not empty and ``exist_ok`` is False (mosaic raised FileExistsError), or it
    holds files that are not a previous output, which ``exist_ok=True`` does not delete."""


class OutputInUseError(OutputExistsError):
    """Another writer or conversion (this process or another) is writing into the output directory."""


class OutputClaim:
    """A local output directory held by one writer until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._pid = os.getpid()

    def release(self) -> None:
        """Let other writers have the directory. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.getpid() == self._pid:
            # Unlock before closing: a process forked meanwhile (DataLoader workers) shares the open
            # directory, and closing our descriptor alone would leave it locked until that child exits.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        # A forked child only closes its copy: unlocking would release the claim of the process it
        # was forked from (the lock belongs to the open directory both share).
        os.close(fd)

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        # A writer dropped without finish() or abandon() must not keep its directory locked forever.
        self.release()


def is_partition_name(name: str) -> bool:
    """Whether ``name`` is a partition directory name of a conversion (``part-00003``, ``00003-<call>-0``)."""
    return _PARTITION.fullmatch(name) is not None


def check_output(local: Path, *, exist_ok: bool, hint: str = "pass exist_ok=True to replace it") -> None:
    """Raise what :func:`claim_output` would raise, changing nothing (a missing directory passes).

    For a writer with a second output (a remote): check the local one before touching the remote.
    """
    if local.exists() and not local.is_dir():
        raise ConfigError(f"out: {local} exists and is not a directory")
    if not local.is_dir():
        return
    fd = _lock(local)
    if fd is None:
        raise _in_use(local)
    try:
        with contextlib.ExitStack() as held:
            _removable(local, exist_ok, hint, held)
    finally:
        os.close(fd)


def claim_output(
    local: Path, *, exist_ok: bool, hint: str = "pass exist_ok=True to replace it"
) -> OutputClaim:
    """Create or check ``local``, lock it for this writer, and empty it if ``exist_ok``.

    A directory below ``local`` that another writer holds (a partition still being written, for instance
    by a task of an earlier failed run) is left to it, not deleted under it.

    Raises:
        ConfigError: ``local`` exists and is not a directory.
        OutputInUseError: another writer holds ``local``.
        OutputExistsError: ``local`` is not empty and ``exist_ok`` is False, or it holds something that
            is not a previous output (named in the message); nothing was deleted.
    """
    if local.exists() and not local.is_dir():
        raise ConfigError(f"out: {local} exists and is not a directory")
    local.mkdir(parents=True, exist_ok=True)
    fd = _lock(local)
    if fd is None:
        raise _in_use(local)
    claim = OutputClaim(local, fd)
    try:
        with contextlib.ExitStack() as held:
            # Every directory to delete stays locked by us until it is gone, so no writer starts in it.
            for entry in _removable(local, exist_ok, hint, held):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    except BaseException:
        claim.release()
        raise
    return claim


def _in_use(local: Path) -> OutputInUseError:
    return OutputInUseError(f"out: directory {local} is being written by another writer or conversion")


def _removable(local: Path, exist_ok: bool, hint: str, held: contextlib.ExitStack) -> list[Path]:
    """The entries of ``local`` to delete (locking the directories among them into ``held``)."""
    entries = sorted(local.iterdir())
    if entries and not exist_ok:
        raise OutputExistsError(f"out: directory {local} is not empty; {hint}")
    partitions = _indexed_dirs(local)
    return [entry for entry in entries if _replaceable(local, entry, held, partitions)]


def _lock(directory: Path) -> int | None:
    """An open descriptor of ``directory`` holding its exclusive flock, or None if another holds it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            return None
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            # A filesystem without flock (Lustre mounted without -o flock answers ENOSYS, some NFS
            # setups ENOLCK): write unguarded, as mosaic always did.
            return fd
        os.close(fd)
        raise
    return fd


def _replaceable(root: Path, entry: Path, held: contextlib.ExitStack, partitions: frozenset[str]) -> bool:
    """Whether to delete ``entry``: True for an output file or a partition directory that no other writer
    holds, False for a directory (or one below it) that another writer holds.

    ``partitions`` are the directory names the index beside ``entry`` references: with the names
    conversions give partitions, the only directories an output has.

    Raises:
        OutputExistsError: ``entry`` is, or holds, something that is not part of an output.
    """
    if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
        _foreign(root, entry)
    if entry.is_file():
        if not _OWN_FILE.fullmatch(entry.name):
            _foreign(root, entry)
        return True
    if entry.name not in partitions and not _PARTITION.fullmatch(entry.name):
        _foreign(root, entry)  # a cache, a checkout, ...: whatever it holds, it is not a partition
    fd = _lock(entry)
    if fd is None:
        return False
    held.callback(os.close, fd)
    inner = _indexed_dirs(entry)
    return all([_replaceable(root, child, held, inner) for child in sorted(entry.iterdir())])


def _indexed_dirs(directory: Path) -> frozenset[str]:
    """The first path components of the basenames in ``directory/index.json`` that have one (a merge's
    partitions); empty if there is no readable index."""
    try:
        shards = json.loads((directory / "index.json").read_bytes())["shards"]
        names = {
            info["basename"].split("/", 1)[0]
            for shard in shards
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta")
            if isinstance(info := shard.get(key), dict) and "/" in str(info.get("basename", ""))
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return frozenset()
    return frozenset(names)


def _foreign(root: Path, entry: Path) -> None:
    raise OutputExistsError(
        f"out: {root} holds {entry}, which is not part of a previous output; exist_ok=True replaces "
        "only index.json, shard files and partition directories, so nothing was deleted: move it or "
        "choose another directory"
    )
