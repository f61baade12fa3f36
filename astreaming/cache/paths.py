"""Where cached files live under ``local``, and the guard that keeps them there.

The layout is the reference's: a stream's files sit in ``local/<split>/<basename>``. Basenames come from an
``index.json`` that may be hostile or simply wrong, so every path handed out here is checked to stay inside
the cache root: absolute names, ``..`` components and symlinks along the way are refused with a
:class:`~astreaming.errors.CacheError` naming the offending entry.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from astreaming.errors import CacheError

__all__ = ["CacheDir", "safe_join"]


def _relative_parts(name: str, *, what: str) -> tuple[str, ...]:
    """Split a relative, slash-separated name into parts, refusing anything that could escape."""
    if not name or "\x00" in name:
        raise CacheError(f"{what}: invalid empty or NUL-containing name {name!r}")
    if "\\" in name:
        # A backslash is a separator on Windows-written indexes; treat it as hostile rather than guess.
        raise CacheError(f"{what}: backslash in name {name!r} is not allowed")
    pure = PurePosixPath(name)
    if pure.is_absolute():
        raise CacheError(f"{what}: absolute path {name!r} is not allowed in the cache")
    parts = tuple(p for p in pure.parts if p != ".")
    if not parts:
        raise CacheError(f"{what}: name {name!r} does not name a file")
    if ".." in parts:
        raise CacheError(f"{what}: '..' in {name!r} would escape the cache directory")
    return parts


def safe_join(root: Path, name: str, *, what: str = "shard", resolved: bool = False) -> Path:
    """Join an untrusted relative ``name`` onto ``root`` and prove the result stays under ``root``.

    Args:
        root: The cache root; it may itself be reached through a symlink (the user chose it).
        name: A relative, ``/``-separated name such as ``"3/shard.00000.mds"`` (from an index).
        what: Used in error messages, e.g. ``"shard 12"``.
        resolved: ``root`` is already absolute and free of symlinks (``Path.resolve()`` of it), as
            :class:`CacheDir` keeps it: it is not resolved again (five ``lstat`` calls a file).

    Returns:
        The absolute path inside the (resolved) root.

    Raises:
        CacheError: The name is absolute, contains ``..``, or crosses a symlink inside the root.
    """
    base = Path(root) if resolved else Path(root).resolve()
    parts = _relative_parts(name, what=what)
    current = base
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            # Nothing further down exists yet, so nothing further down can be a symlink.
            break
        if stat.S_ISLNK(mode):
            raise CacheError(f"{what}: {name!r} passes through a symlink at {current}; refused")
    # A resolved base, parts without ``.`` or ``..``, and no symlink among the parts that exist: the joined
    # path is already its own resolution, so resolving it again (as an earlier version did) proves nothing.
    return base.joinpath(*parts)


class CacheDir:
    """The cache directory of one stream: ``local`` joined with the optional ``split``.

    Args:
        local: The stream's ``local`` argument.
        split: The optional ``split`` sub-directory (itself checked like a basename).
    """

    def __init__(self, local: str | os.PathLike[str], split: str | None = None) -> None:
        self.local = Path(local).expanduser().resolve()
        self.root = safe_join(self.local, split, what="split", resolved=True) if split else self.local

    def path(self, basename: str, *, what: str = "shard") -> Path:
        """The cached location of ``basename`` (from the index), checked to stay in this directory."""
        return safe_join(self.root, basename, what=what, resolved=True)

    def index_path(self) -> Path:
        """Where this stream's ``index.json`` is cached."""
        return self.root / "index.json"

    def __repr__(self) -> str:
        return f"CacheDir({str(self.root)!r})"
