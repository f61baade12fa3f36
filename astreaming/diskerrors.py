"""Local disk failures in the cache, as one typed error that says what broke and what to do.

A full disk, a read-only mount or a directory without write permission surface from many places (the
index copy, a lock file, a download, a decompression). Each of them maps its ``OSError`` here, once, so
the user always sees a :class:`~astreaming.errors.CacheError` naming the file or directory, never a bare
``OSError: [Errno 28]`` from a temp file they never heard of.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from astreaming.errors import CacheError

__all__ = ["disk_error", "mapped_disk_errors"]

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_READ_ONLY = frozenset({errno.EROFS})
_DENIED = frozenset({errno.EACCES, errno.EPERM})


def disk_error(path: str | os.PathLike[str], err: OSError, *, action: str = "writing") -> CacheError:
    """The :class:`CacheError` for an ``OSError`` raised while ``action`` ``path`` in the cache.

    A read-only or permission failure names the directory (that is what the user must change); a full
    disk names the file being written when it happened.
    """
    target = Path(path)
    directory = target.parent
    if err.errno in _FULL:
        return CacheError(
            f"disk full while {action} {target}: {err.strerror}; free space on the cache's file system "
            "or set cache_limit"
        )
    if err.errno in _READ_ONLY:
        return CacheError(
            f"cache directory {directory} is on a read-only file system ({action} {target.name}); "
            "choose a writable `local`"
        )
    if err.errno in _DENIED:
        return CacheError(
            f"cache directory {directory} is not writable ({action} {target.name}: {err.strerror}); "
            "choose a writable `local`"
        )
    return CacheError(f"cannot complete {action} {target}: {err}")


@contextlib.contextmanager
def mapped_disk_errors(path: str | os.PathLike[str], *, action: str = "writing") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into :func:`disk_error` for ``path``.

    Only for blocks whose ``OSError`` can only come from the local disk (not from a network client,
    whose errors the storage layer maps to ``StorageError`` before they get here).
    """
    try:
        yield
    except (TimeoutError, ConnectionError):
        raise  # OSError subclasses too, but never about the local disk
    except OSError as err:
        raise disk_error(path, err, action=action) from err
