"""Shard basenames come from index.json files, which are untrusted input.

A basename is a relative POSIX path such as ``shard.00000.mds`` or, after ``merge_index``,
``3/shard.00000.mds``. Anything that could name a file outside the dataset directory is refused here,
once, so the readers, the cache and the writers can join basenames onto a root without further checks.
"""

from __future__ import annotations

from pathlib import Path

from astreaming.errors import FormatError

__all__ = ["check_basename", "join_basename"]


def check_basename(basename: object, *, source: str) -> str:
    """Return ``basename`` if it is a safe relative path, else raise.

    Refused: non-strings, empty strings, absolute paths, backslashes, drive letters, NUL bytes, empty
    path parts (``a//b``, trailing ``/``), ``.`` and ``..`` parts.

    Args:
        basename: the value read from an index.
        source: the file (or URL) the value came from, named in the error.

    Raises:
        FormatError: naming ``source`` and the basename.
    """
    if not isinstance(basename, str):
        raise FormatError(f"{source}: shard basename must be a string, got {basename!r}")
    problem = _basename_problem(basename)
    if problem:
        raise FormatError(f"{source}: unsafe shard basename {basename!r}: {problem}")
    return basename


def _basename_problem(basename: str) -> str:
    if not basename:
        return "empty"
    if "\x00" in basename:
        return "contains NUL"
    if "\\" in basename:
        return "contains a backslash"
    if basename.startswith("/"):
        return "absolute path"
    if len(basename) >= 2 and basename[1] == ":":
        return "drive letter"
    for part in basename.split("/"):
        if part in ("", ".", ".."):
            return f"path part {part!r} is not allowed"
    return ""


def join_basename(root: str | Path, basename: str) -> Path:
    """Join a checked basename onto ``root`` (a directory).

    The basename must have passed :func:`check_basename`; this only guards against programming errors.
    """
    if _basename_problem(basename):
        raise FormatError(f"unsafe shard basename {basename!r}")
    return Path(root).joinpath(*basename.split("/"))
