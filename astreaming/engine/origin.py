"""Which remote a cache directory holds: one directory caches one remote dataset, never two.

Two remotes cached in one directory share file names (``index.json``, ``shard.00000.mds``), so the shards
of the first stay and are read as the second's: silently when their sizes agree (the same writer settings
and sample shapes), else as a size error. mosaic refused a directory that a live dataset with another
remote was using, and trusted whatever a directory held otherwise. The first process that caches a remote
in a directory records it in ``<local>/.astreaming/remote`` (credentials and query left out); a dataset
that would cache another remote there is refused, naming both.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from astreaming.diskerrors import mapped_disk_errors
from astreaming.errors import CacheError, ConfigError
from astreaming.storage.urls import redact

__all__ = ["check_origin", "origin_of"]

#: The cache's metadata directory (the node ledger's and the version pins' too).
META_DIR = ".astreaming"
RECORD = "remote"


def origin_of(remote_root: str) -> str:
    """How a remote is recorded: without its query (a SAS token, a signature: credentials that rotate)
    and trailing slashes, credentials redacted; a local path resolved (symlinks, ``..``)."""
    if "://" not in remote_root:
        return os.path.realpath(remote_root)
    return redact(remote_root.partition("?")[0]).rstrip("/")


def check_origin(local_root: Path, remote_root: str, *, record: bool = False) -> None:
    """Check that ``local_root`` caches ``remote_root`` (or nothing recorded yet); with ``record``, record
    it first when nothing is (called once the remote's index was read: a failed start leaves no file).

    Raises:
        ConfigError: the directory already caches another remote.
        CacheError: the record cannot be read.
    """
    origin = origin_of(remote_root)
    path = local_root / META_DIR / RECORD
    recorded = _read(path)
    if recorded is None:
        if not record or not _record(path, origin):
            # Nothing recorded yet, or a cache the disk will not let us write to (read-only, full),
            # which is read as it is: a write there fails, naming the directory.
            return
        recorded = _read(path) or origin  # another process may have recorded first: its record decides
    if recorded != origin:
        raise ConfigError(
            f"local directory {str(local_root)!r} caches {recorded}, not {origin}: two remotes cannot "
            "share one `local` (their files have the same names, so one would be read as the other); "
            "give this stream another `local`, or delete the directory first"
        )


def _record(path: Path, origin: str) -> bool:
    """Write the record unless one exists (the first process to record decides); False if the disk
    refuses the write."""
    tmp = path.with_name(f"{RECORD}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(origin, "utf-8")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # complete when it appears
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return True


def _read(path: Path) -> str | None:
    try:
        with mapped_disk_errors(path, action="reading"):
            return path.read_text("utf-8")
    except CacheError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            return None
        raise
