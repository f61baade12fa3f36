"""Give back the pages of a read-only shard mapping that this process has touched.

A mapped shard's pages count in the process's resident set once read, and stay there while the mapping is
open: an epoch over shards kept open (the reader cache keeps up to hundreds) would show the whole
dataset as resident. They are file pages, clean and shared, so dropping them from this process's page
tables loses nothing: the data stays in the kernel's page cache, and the next read of a dropped page is a
minor fault that maps it again. Only read-only file mappings are released (``MADV_DONTNEED`` on a private
anonymous mapping would zero it); decompressed shards are ``bytes`` and are left alone.
"""

from __future__ import annotations

import mmap

__all__ = ["release_pages"]

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def release_pages(buf: object) -> None:
    """Drop this process's resident pages of ``buf`` if it is an open file mapping (else nothing)."""
    if _DONTNEED is None or not isinstance(buf, mmap.mmap) or buf.closed:
        return
    buf.madvise(_DONTNEED)
