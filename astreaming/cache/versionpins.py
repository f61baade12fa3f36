"""The version of each remote shard file a cache directory was filled with, kept across evictions.

A shard downloaded again (evicted under ``cache_limit``, or needed by another process of the node after
that) must be the bytes the cache had before: the index says nothing about them unless it records
hashes, and the same size proves nothing. The first download of a file records the version its answer
reported (:mod:`astreaming.storage.versions`) in ``<stream cache>/.astreaming/versions/<index>/<file>``;
every later download or range read of the file through this cache must report the same one. The record
is written once (a link that fails if another process recorded first, whose record then decides) and
survives evictions. It is kept per content of ``index.json``: a dataset written again with a new index
starts new records, while one rewritten in place under the same index is noticed by the next download.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import quote

from astreaming.errors import ObjectChanged

__all__ = ["VersionPins"]

#: The cache's metadata directory (the node ledger's too; not imported from it: sqlite3 stays unloaded).
META_DIR = ".astreaming"


class VersionPins:
    """The recorded versions of one stream's files in one cache directory, for one ``index.json``.

    Args:
        root: The stream's cache directory (where its ``index.json`` is cached).
        index_digest: A digest of the index's bytes.
    """

    def __init__(self, root: Path, index_digest: str) -> None:
        self.dir = root / META_DIR / "versions" / index_digest

    def _path(self, basename: str) -> Path:
        return self.dir / quote(basename, safe="")  # one flat name per file, nothing like a shard's

    def get(self, basename: str) -> str | None:
        """The version recorded for ``basename``, or ``None`` if none was."""
        try:
            return self._path(basename).read_text("utf-8")
        except FileNotFoundError:
            return None

    def put(self, basename: str, version: str) -> None:
        """Record ``version`` for ``basename``, replacing any earlier record (complete when it appears)."""
        path = self._path(basename)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
        tmp.write_text(version, "utf-8")
        os.replace(tmp, path)

    def record(self, basename: str, version: str | None, shown: str) -> None:
        """Record ``version`` for ``basename`` unless one is already recorded, which must be the same.

        ``shown`` is the file's URL as errors show it (credentials redacted).

        Raises:
            ObjectChanged: another process of this cache recorded another version of the file first.
        """
        if not version:
            return
        path = self._path(basename)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
        tmp.write_text(version, "utf-8")
        try:
            os.link(tmp, path)  # complete when it appears; fails if another process recorded first
        except FileExistsError:
            recorded = path.read_text("utf-8")
            if recorded != version:
                raise ObjectChanged(
                    f"{shown}: the object changed while this job reads it (version {recorded} was "
                    f"read before, now {version}): a dataset must not be rewritten in place while it "
                    "is read; write the new version under another prefix (or clear the cache after the job)",
                    url=shown,
                ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
