"""Translate the OSError of reading or writing a local object into :mod:`astreaming.errors`.

Kept apart from :mod:`astreaming.storage.errormap` (statuses and aiohttp errors) so that the local backend
imports no HTTP client.

=====================================  ===============================================
cause                                  error
=====================================  ===============================================
missing file, not a directory          ObjectNotFound (not retried)
EACCES, EPERM                          PermissionDenied (not retried)
EIO, EAGAIN, ETIMEDOUT, ESTALE, EINTR  TransientStorageError (network filesystems)
anything else                          StorageError (not retried)
=====================================  ===============================================
"""

from __future__ import annotations

import errno

from astreaming.errors import ObjectNotFound, PermissionDenied, StorageError, TransientStorageError
from astreaming.storage.urls import redact

__all__ = ["map_os_error"]


def map_os_error(e: OSError, url: str) -> StorageError:
    """The typed error for an OSError reading a local object."""
    shown = redact(url)
    if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return ObjectNotFound(f"{shown}: no such file ({e.strerror})", url=shown)
    if isinstance(e, PermissionError):
        return PermissionDenied(f"{shown}: permission denied ({e.strerror})", url=shown)
    if e.errno in (errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EINTR):
        # Network filesystems (NFS, FUSE mounts of buckets) fail like networks do.
        return TransientStorageError(f"{shown}: I/O error ({e})", url=shown)
    return StorageError(f"{shown}: {e}", url=shown)
