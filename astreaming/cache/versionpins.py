"""The version of each remote shard file a cache directory was filled with, kept across evictions.

A shard downloaded again (evicted under ``cache_limit``, or needed by another process of the node after
that) must be the bytes the cache had before: the index says nothing about them unless it records
hashes, and the same size proves nothing. The first download of a file records the version its answer
reported (:mod:`astreaming.storage.versions`) in ``<stream cache>/.astreaming/versions/<index>/<file>``,
with whether that token is content-derived and a digest of the bytes when one is known (the store's md5,
or one computed over the bytes of an opaque token); every later download or range read of the file
through this cache must report the same version, or, for a whole download, bytes of the same digest. The
first record is written once (a link that fails if another process recorded first, whose record then
decides) and survives evictions. It is kept per content of ``index.json``: a dataset written again with a
new index starts new records, while one rewritten in place under the same index is noticed by the next
download.

A record is a few lines of text: the token, then ``content`` or ``opaque``, then the digest
(``<algo>:<hex>``) if any. A one-line record (the token alone) is an opaque token without a digest.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["PinEntry", "VersionPins"]

#: The cache's metadata directory (the node ledger's too; not imported from it: sqlite3 stays unloaded).
META_DIR = ".astreaming"


@dataclass(frozen=True)
class PinEntry:
    """What the cache recorded of a file's version.

    Attributes:
        token: The version token its answers carried.
        content: Whether ``token`` changes with the bytes and only with them.
        digest: ``"<algo>:<hex>"`` of the file's bytes, or ``None`` if unknown.
    """

    token: str
    content: bool = False
    digest: str | None = None

    def dumps(self) -> str:
        """The record's text."""
        lines = [self.token, "content" if self.content else "opaque"]
        if self.digest:
            lines.append(self.digest)
        return "\n".join(lines)

    @classmethod
    def loads(cls, text: str) -> PinEntry:
        """A record read back (a one-line record: an opaque token without a digest)."""
        lines = text.split("\n")
        content = len(lines) > 1 and lines[1] == "content"
        digest = lines[2] if len(lines) > 2 and lines[2] else None
        return cls(lines[0], content, digest)


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

    def _temp(self, path: Path, text: str) -> Path:
        """A new temporary file next to ``path`` holding ``text``: renamed or linked into place, it appears
        complete."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
        tmp.write_text(text, "utf-8")
        return tmp

    def entry(self, basename: str) -> PinEntry | None:
        """What is recorded for ``basename``, or ``None`` if nothing is."""
        try:
            return PinEntry.loads(self._path(basename).read_text("utf-8"))
        except FileNotFoundError:
            return None

    def get(self, basename: str) -> str | None:
        """The version token recorded for ``basename``, or ``None`` if none was."""
        entry = self.entry(basename)
        return entry.token if entry is not None else None

    def put(self, basename: str, version: str | PinEntry) -> None:
        """Record ``version`` (a token, or a whole entry) for ``basename``, replacing any earlier record."""
        entry = version if isinstance(version, PinEntry) else PinEntry(version)
        path = self._path(basename)
        os.replace(self._temp(path, entry.dumps()), path)

    def record(self, basename: str, entry: PinEntry) -> PinEntry | None:
        """Record ``entry`` for ``basename`` unless something is recorded already.

        Returns:
            ``None`` when ``entry`` is now the record; else the record another process of this cache
            wrote first (the caller decides whether the two are one version).
        """
        path = self._path(basename)
        tmp = self._temp(path, entry.dumps())
        try:
            os.link(tmp, path)  # complete when it appears; fails if another process recorded first
        except FileExistsError:
            return PinEntry.loads(path.read_text("utf-8"))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return None
