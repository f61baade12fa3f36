"""merge_index: one index.json over partitions written by separate writers (reference §7.2).

Each partition's shard entries are copied in order, unchanged except that every file basename is
prefixed with the partition's directory relative to ``out`` (``"3/shard.00000.mds"``). The result is
written as ``{"version": 2, "shards": [...]}`` without key sorting, as mosaic does, atomically. The
partition index files are left in place.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import dump_merged_index, parse_index, parse_shard, write_text_atomic

__all__ = ["merge_index"]

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FILE_KEYS = ("raw_data", "zip_data", "raw_meta", "zip_meta")


def merge_index(*args: Any, **kwargs: Any) -> None:
    """Merge partition indexes into ``out/index.json``.

    Two call forms, as in mosaic:

    - ``merge_index(index_file_urls, out, keep_local=True, download_timeout=60)``: the partition
      ``index.json`` paths (or ``(local, remote)`` tuples: the local path is used), merged in the given
      order; each partition directory must lie inside ``out``.
    - ``merge_index(out_root, keep_local=True, download_timeout=60)``: every ``index.json`` below
      ``out_root`` (its own excepted), in sorted path order.

    Only local paths are supported for now; remote URLs raise ConfigError.

    Raises:
        ConfigError: bad arguments, remote paths, no partitions, a partition outside ``out``.
        FormatError: a partition index is missing or invalid (naming the file).
    """
    if args and isinstance(args[0], (list, tuple)) and not _is_pair(args[0]):
        index_files, rest = list(args[0]), args[1:]
        if rest:
            out, rest = rest[0], rest[1:]
        elif "out" in kwargs:
            out = kwargs.pop("out")
        else:
            raise ConfigError("merge_index: missing argument 'out'")
        _check_options(rest, kwargs)
        _merge_list(index_files, _local_dir(out, "out"))
        return
    if args:
        out_root, rest = args[0], args[1:]
    elif "out_root" in kwargs:
        out_root = kwargs.pop("out_root")
    elif "index_file_urls" in kwargs:
        index_files = kwargs.pop("index_file_urls")
        out = kwargs.pop("out", None)
        if out is None:
            raise ConfigError("merge_index: missing argument 'out'")
        _check_options((), kwargs)
        _merge_list(list(index_files), _local_dir(out, "out"))
        return
    else:
        raise ConfigError("merge_index: expected index_file_urls and out, or out_root")
    _check_options(rest, kwargs)
    root = _local_dir(out_root, "out_root")
    found = sorted(p for p in root.rglob("index.json") if p.parent != root and not p.name.startswith("."))
    if not found:
        raise ConfigError(f"out_root: no partition index.json found below {root}")
    _merge_list([str(p) for p in found], root)


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value)


def _check_options(rest: Sequence[Any], kwargs: dict[str, Any]) -> None:
    if len(rest) > 2:
        raise ConfigError(f"merge_index: too many positional arguments {list(rest)!r}")
    for key in kwargs:
        if key not in ("keep_local", "download_timeout"):
            raise ConfigError(f"merge_index: unknown argument {key!r}")


def _local_dir(value: object, name: str) -> Path:
    if _is_pair(value):
        value = value[0]  # type: ignore[index]
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name}: expected a directory path, got {value!r}")
    text = os.fspath(value)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif _URL_RE.match(text):
        raise ConfigError(f"{name}: remote paths are not supported yet ({text!r})")
    return Path(text)


def _merge_list(index_files: list[Any], out: Path) -> None:
    if not index_files:
        raise ConfigError("index_file_urls: no partition index given")
    merged: list[dict[str, Any]] = []
    out_abs = out.resolve()
    for item in index_files:
        path = _local_dir(item, "index_file_urls")
        if path.name != "index.json":
            path = path / "index.json" if path.is_dir() else path
        part_dir = path.parent.resolve()
        try:
            prefix = part_dir.relative_to(out_abs).as_posix()
        except ValueError:
            raise ConfigError(f"index_file_urls: partition {path} is not inside out={out}") from None
        if prefix == ".":
            raise ConfigError(f"index_file_urls: {path} is out's own index, not a partition")
        merged.extend(_prefixed_shards(path, prefix))
    write_text_atomic(out / "index.json", dump_merged_index(merged))


def _prefixed_shards(path: Path, prefix: str) -> list[dict[str, Any]]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: partition index not found") from None
    parse_index(text, source=str(path))  # strict validation: bad partitions fail here, naming the file
    shards: list[dict[str, Any]] = json.loads(text)["shards"]
    out = []
    for position, shard in enumerate(shards):
        shard = copy.deepcopy(shard)  # keep the partition's key order; only basenames change
        for key in _FILE_KEYS:
            info = shard.get(key)
            if info is not None:
                info["basename"] = f"{prefix}/{info['basename']}"
        parse_shard(shard, source=str(path), position=position)
        out.append(shard)
    return out
