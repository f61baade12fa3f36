"""Shard hashes: the hashlib algorithms and the xxhash family, as hex digests (mosaicml-streaming 0.13).

Index files record ``{algo: hexdigest}`` per file. Writers take a sorted, duplicate-free ``hashes`` list;
readers verify one algorithm (``validate_hash``) over the downloaded bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from astreaming.crashpoints import crash_point
from astreaming.errors import ConfigError, HashMismatch

_CHUNK = 1 << 20

# hashlib constructors that are module attributes (what mosaic accepts), minus the variable-length shakes.
_HASHLIB: dict[str, Callable[..., Any]] = {
    name: getattr(hashlib, name)
    for name in sorted(hashlib.algorithms_available)
    if hasattr(hashlib, name) and not name.startswith("shake_")
}


def _xxhash(name: str) -> Callable[..., Any]:
    """xxhash's constructor ``name``, importing xxhash on first use: a process that verifies nothing
    by xxhash does not load it."""

    def make(*args: Any, **kwargs: Any) -> Any:
        import xxhash

        return getattr(xxhash, name)(*args, **kwargs)

    return make


_XXHASH: dict[str, Callable[..., Any]] = {
    name: _xxhash(name) for name in ("xxh32", "xxh64", "xxh3_64", "xxh3_128", "xxh128")
}
_ALGOS: dict[str, Callable[..., Any]] = {**_HASHLIB, **_XXHASH}


def hash_names() -> list[str]:
    """Every supported algorithm, sorted: hashlib attributes (without ``shake_*``) and five xxhash ones."""
    return sorted(_ALGOS)


def _constructor(algo: str) -> Callable[..., Any]:
    try:
        return _ALGOS[algo]
    except (KeyError, TypeError):
        raise ConfigError(f"unsupported hash algorithm {algo!r} (supported: {', '.join(_ALGOS)})") from None


def validate_hashes(algos: Sequence[str] | None) -> list[str]:
    """Checks a writer's ``hashes`` argument.

    Args:
        algos: None or a sequence of algorithm names.

    Returns:
        The names as a list ([] for None).

    Raises:
        ConfigError: a name is not supported, or the names are not unique and sorted (as mosaic requires,
            e.g. ``['xxh64', 'sha1']`` is refused); the message names ``hashes``.
    """
    if algos is None:
        return []
    if isinstance(algos, (str, bytes)) or not isinstance(algos, Sequence):
        raise ConfigError(f"hashes: expected a list of algorithm names, got {algos!r}")
    names = list(algos)
    unknown = [a for a in names if not isinstance(a, str) or a not in _ALGOS]
    if unknown:
        raise ConfigError(f"hashes: unsupported algorithm(s) {unknown!r} (supported: {', '.join(_ALGOS)})")
    if names != sorted(set(names)):
        raise ConfigError(f"hashes: must be unique and sorted, got {names!r} (use {sorted(set(names))!r})")
    return names


def hash_bytes(algo: str, data: bytes | memoryview) -> str:
    """The hex digest of ``data`` under ``algo``.

    Raises:
        ConfigError: ``algo`` is not supported.
    """
    digest: str = _constructor(algo)(data).hexdigest()
    return digest


def new_hasher(algo: str) -> Any:
    """A fresh incremental hasher for ``algo`` (``update(data)``, ``hexdigest()``).

    Raises:
        ConfigError: ``algo`` is not supported.
    """
    return _constructor(algo)()


def hash_file(algo: str, path: Path) -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks (bounded memory).

    Raises:
        ConfigError: ``algo`` is not supported.
        OSError: the file cannot be read.
    """
    hasher = _constructor(algo)()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while True:
            n = file.readinto(buffer)
            if not n:
                break
            hasher.update(view[:n])
            crash_point("verify.hashing")
    digest: str = hasher.hexdigest()
    return digest


def verify_hash(
    algo: str,
    expected: str,
    *,
    data: bytes | memoryview | None = None,
    path: Path | None = None,
    name: str,
) -> None:
    """Checks ``data`` (or the file at ``path``) against an expected hex digest.

    Args:
        algo: the algorithm name.
        expected: the hex digest the index records.
        data: the bytes to check; exactly one of ``data`` and ``path`` is given.
        path: the file to check.
        name: the file or shard name for the error message.

    Raises:
        HashMismatch: the digest differs; the message names ``name`` and ``algo``.
        ConfigError: ``algo`` is not supported, or not exactly one of ``data``/``path`` was given.
    """
    if (data is None) == (path is None):
        raise ConfigError("verify_hash: give exactly one of data= and path=")
    actual = hash_bytes(algo, data) if data is not None else hash_file(algo, path)  # type: ignore[arg-type]
    if actual != expected.lower():
        raise HashMismatch(f"{name}: {algo} digest {actual} does not match the index ({expected})")


__all__ = ["hash_bytes", "hash_file", "hash_names", "new_hasher", "validate_hashes", "verify_hash"]
