"""The index.json v2 model: parse with mosaic's strictness, serialise byte-for-byte like mosaic.

An index is ``{"shards": [entry, ...], "version": 2}``. Every entry names its own format and carries
exactly the keys mosaic's reader constructors accept: an unknown key, a missing key, a wrong type or a
version other than 2 is a :class:`~astreaming.errors.FormatError` naming the file and the key (mosaic
raised ``TypeError`` from ``cls(**entry)``; we keep the strictness, with a better message).

Entries are frozen dataclasses. For the download engine each entry says which files to fetch
(:meth:`ShardEntry.fetch_files`: the zip file if compressed, else the raw one, plus the meta file of
JSON/XSV shards), with their sizes and hashes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astreaming.errors import FormatError, IndexJSONError
from astreaming.format.paths import check_basename

__all__ = [
    "INDEX_VERSION",
    "FileInfo",
    "JSONEntry",
    "MDSEntry",
    "ShardEntry",
    "XSVEntry",
    "dump_index",
    "dump_merged_index",
    "load_index",
    "parse_index",
    "parse_shard",
    "write_text_atomic",
]

INDEX_VERSION = 2

_COMMON_KEYS = ("compression", "format", "hashes", "raw_data", "samples", "size_limit", "version", "zip_data")
_MDS_KEYS = frozenset((*_COMMON_KEYS, "column_encodings", "column_names", "column_sizes"))
_JSON_KEYS = frozenset((*_COMMON_KEYS, "columns", "newline", "raw_meta", "zip_meta"))
_XSV_KEYS = frozenset((*_COMMON_KEYS, "column_encodings", "column_names", "newline", "raw_meta", "zip_meta"))
# Counts and sizes must fit the int64 arrays the engine builds from them (numpy raised OverflowError).
_MAX_INT = 2**63 - 1
# CSV/TSV entries must NOT carry "separator" (mosaic's CSV/TSV readers hard-code it and reject the key).
_FIXED_SEPARATORS = {"csv": ",", "tsv": "\t"}


@dataclass(frozen=True)
class FileInfo:
    """One file of a shard: ``{"basename": str, "bytes": int, "hashes": {algo: hexdigest}}``."""

    basename: str
    bytes: int
    hashes: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys in mosaic's order."""
        return {"basename": self.basename, "bytes": self.bytes, "hashes": dict(self.hashes)}

    def with_prefix(self, prefix: str) -> FileInfo:
        """The same file under ``prefix/`` (merge_index nests partitions)."""
        return FileInfo(f"{prefix}/{self.basename}", self.bytes, self.hashes)


@dataclass(frozen=True)
class ShardEntry:
    """Fields every shard entry has. Use the subclasses."""

    format: str
    compression: str | None
    hashes: tuple[str, ...]
    raw_data: FileInfo
    zip_data: FileInfo | None
    samples: int
    size_limit: int | None

    def file_pairs(self) -> tuple[tuple[FileInfo, FileInfo | None], ...]:
        """``(raw, zip)`` for each file of the shard: the data file first, then the meta file if any."""
        return ((self.raw_data, self.zip_data),)

    def fetch_files(self) -> tuple[FileInfo, ...]:
        """The files to download: the zip file when compressed, else the raw file, per pair."""
        return tuple(raw if zipped is None else zipped for raw, zipped in self.file_pairs())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys sorted as mosaic writes them."""
        return dict(sorted(self._fields().items()))

    def _fields(self) -> dict[str, Any]:
        return {
            "compression": self.compression,
            "format": self.format,
            "hashes": list(self.hashes),
            "raw_data": self.raw_data.to_dict(),
            "samples": self.samples,
            "size_limit": self.size_limit,
            "version": INDEX_VERSION,
            "zip_data": None if self.zip_data is None else self.zip_data.to_dict(),
        }


@dataclass(frozen=True)
class MDSEntry(ShardEntry):
    """An MDS shard: one file holding the samples, offsets and the writer config."""

    column_encodings: tuple[str, ...]
    column_names: tuple[str, ...]
    column_sizes: tuple[int | None, ...]

    def _fields(self) -> dict[str, Any]:
        out = super()._fields()
        out["column_encodings"] = list(self.column_encodings)
        out["column_names"] = list(self.column_names)
        out["column_sizes"] = list(self.column_sizes)
        return out


@dataclass(frozen=True)
class _SplitEntry(ShardEntry):
    """A shard stored as a data file plus a ``.meta`` file of offsets (JSONL and XSV)."""

    newline: str
    raw_meta: FileInfo
    zip_meta: FileInfo | None

    def file_pairs(self) -> tuple[tuple[FileInfo, FileInfo | None], ...]:
        return ((self.raw_data, self.zip_data), (self.raw_meta, self.zip_meta))

    def _fields(self) -> dict[str, Any]:
        out = super()._fields()
        out["newline"] = self.newline
        out["raw_meta"] = self.raw_meta.to_dict()
        out["zip_meta"] = None if self.zip_meta is None else self.zip_meta.to_dict()
        return out


@dataclass(frozen=True)
class JSONEntry(_SplitEntry):
    """A JSONL shard; ``columns`` maps name to ``"str"``, ``"int"`` or ``"float"``."""

    columns: Mapping[str, str]

    def _fields(self) -> dict[str, Any]:
        out = super()._fields()
        out["columns"] = dict(self.columns)
        return out


@dataclass(frozen=True)
class XSVEntry(_SplitEntry):
    """A CSV/TSV/XSV shard. ``separator`` is stored in the index only for format ``"xsv"``."""

    column_encodings: tuple[str, ...]
    column_names: tuple[str, ...]
    separator: str

    def _fields(self) -> dict[str, Any]:
        out = super()._fields()
        out["column_encodings"] = list(self.column_encodings)
        out["column_names"] = list(self.column_names)
        if self.format == "xsv":
            out["separator"] = self.separator
        return out


class _Fields:
    """Typed access to one JSON object, raising FormatError naming the file, shard and key."""

    def __init__(self, obj: Mapping[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def fail(self, key: str, expected: str) -> FormatError:
        return FormatError(f"{self.where}: key {key!r} must be {expected}, got {self.obj.get(key)!r}")

    def get_int(self, key: str, *, optional: bool = False) -> int | None:
        value = self.obj[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
            raise self.fail(key, "a non-negative 64-bit integer" + (" or null" if optional else ""))
        return value

    def get_str(self, key: str, *, optional: bool = False, nonempty: bool = False) -> str | None:
        value = self.obj[key]
        if value is None and optional:
            return None
        if not isinstance(value, str) or (nonempty and not value):
            raise self.fail(key, "a non-empty string" if nonempty else "a string")
        return value

    def get_str_list(self, key: str) -> tuple[str, ...]:
        value = self.obj[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "a list of strings")
        return tuple(value)

    def get_file_info(self, key: str, *, optional: bool = False) -> FileInfo | None:
        value = self.obj[key]
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "a file object" + (" or null" if optional else ""))
        sub = _Fields(value, f"{self.where}: {key}")
        _check_keys(value, frozenset(("basename", "bytes", "hashes")), sub.where)
        hashes = value["hashes"]
        if not isinstance(hashes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()
        ):
            raise sub.fail("hashes", "an object of algorithm -> hex digest strings")
        basename = check_basename(value["basename"], source=sub.where)
        size = sub.get_int("bytes")
        assert size is not None
        return FileInfo(basename, size, dict(hashes))


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise FormatError(f"{where}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")
    missing = sorted(allowed - set(obj))
    if missing:
        raise FormatError(f"{where}: missing key {missing[0]!r}")


def parse_shard(obj: object, *, source: str, position: int = 0) -> ShardEntry:
    """Validate one shard entry of an index and build its dataclass.

    Args:
        obj: the decoded JSON object.
        source: the index file (or URL), named in errors.
        position: the entry's position in the index, named in errors.

    Raises:
        FormatError: unknown/missing key, wrong type or version, unsafe basename, inconsistent columns.
    """
    where = f"{source}: shard {position}"
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected an object, got {type(obj).__name__}")
    fmt = obj.get("format")
    if fmt == "mds":
        allowed = _MDS_KEYS
    elif fmt == "json":
        allowed = _JSON_KEYS
    elif fmt in ("csv", "tsv"):
        allowed = _XSV_KEYS
    elif fmt == "xsv":
        allowed = _XSV_KEYS | {"separator"}
    else:
        raise FormatError(f"{where}: key 'format' must be one of mds, json, csv, tsv, xsv, got {fmt!r}")
    _check_keys(obj, allowed, where)
    if obj["version"] != INDEX_VERSION or isinstance(obj["version"], bool):
        raise FormatError(f"{where}: key 'version' must be {INDEX_VERSION}, got {obj['version']!r}")
    f = _Fields(obj, where)
    compression = f.get_str("compression", optional=True)
    raw_data = f.get_file_info("raw_data")
    zip_data = f.get_file_info("zip_data", optional=True)
    assert raw_data is not None
    if (compression is None) != (zip_data is None):
        raise FormatError(f"{where}: 'zip_data' must be given exactly when 'compression' is set")
    common: dict[str, Any] = {
        "format": fmt,
        "compression": compression,
        "hashes": f.get_str_list("hashes"),
        "raw_data": raw_data,
        "zip_data": zip_data,
        "samples": f.get_int("samples"),
        "size_limit": f.get_int("size_limit", optional=True),
    }
    if fmt == "mds":
        names, encodings = f.get_str_list("column_names"), f.get_str_list("column_encodings")
        sizes = obj["column_sizes"]
        if not isinstance(sizes, list) or not all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= _MAX_INT)
            for s in sizes
        ):
            raise f.fail("column_sizes", "a list of non-negative 64-bit integers or nulls")
        _check_columns(where, names, encodings, len(sizes))
        return MDSEntry(**common, column_encodings=encodings, column_names=names, column_sizes=tuple(sizes))
    split: dict[str, Any] = {
        "newline": f.get_str("newline", nonempty=True),
        "raw_meta": f.get_file_info("raw_meta"),
        "zip_meta": f.get_file_info("zip_meta", optional=True),
    }
    if (compression is None) != (split["zip_meta"] is None):
        raise FormatError(f"{where}: 'zip_meta' must be given exactly when 'compression' is set")
    if fmt == "json":
        columns = obj["columns"]
        if not isinstance(columns, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
        ):
            raise f.fail("columns", "an object of column name -> encoding")
        return JSONEntry(**common, **split, columns=dict(columns))
    names, encodings = f.get_str_list("column_names"), f.get_str_list("column_encodings")
    _check_columns(where, names, encodings, len(encodings))
    separator = f.get_str("separator", nonempty=True) if fmt == "xsv" else _FIXED_SEPARATORS[fmt]
    assert separator is not None
    return XSVEntry(**common, **split, column_encodings=encodings, column_names=names, separator=separator)


def _check_columns(where: str, names: Sequence[str], encodings: Sequence[str], num_sizes: int) -> None:
    if not (len(names) == len(encodings) == num_sizes):
        raise FormatError(f"{where}: column_names, column_encodings (and column_sizes) differ in length")
    if len(set(names)) != len(names):
        raise FormatError(f"{where}: duplicate column name in {list(names)}")


def parse_index(data: bytes | str | Mapping[str, Any], *, source: str) -> list[ShardEntry]:
    """Parse an index.json document (bytes, text or already-decoded object).

    Raises:
        FormatError: invalid JSON, wrong top-level shape, version or any bad shard entry; names ``source``.
    """
    if isinstance(data, (bytes, str)):
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as exc:
            raise IndexJSONError(f"{source}: not valid JSON: {exc}", exc.doc, exc.pos) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise IndexJSONError(f"{source}: not valid JSON: {exc}") from None
        except RecursionError:
            # Thousands of nested brackets exhaust the decoder's recursion; no valid index nests deeply.
            raise IndexJSONError(f"{source}: not valid JSON: nested too deeply") from None
    else:
        obj = data
    if not isinstance(obj, dict):
        raise FormatError(f"{source}: index must be a JSON object")
    _check_keys(obj, frozenset(("shards", "version")), source)
    if obj["version"] != INDEX_VERSION or isinstance(obj["version"], bool):
        raise FormatError(f"{source}: key 'version' must be {INDEX_VERSION}, got {obj['version']!r}")
    shards = obj["shards"]
    if not isinstance(shards, list):
        raise FormatError(f"{source}: key 'shards' must be a list")
    entries = [parse_shard(entry, source=source, position=i) for i, entry in enumerate(shards)]
    if sum(e.samples for e in entries) > _MAX_INT:
        raise FormatError(f"{source}: the shards' sample counts add up to more than 2**63 - 1")
    return entries


def load_index(path: str | Path) -> list[ShardEntry]:
    """Read and parse an index.json file.

    Raises:
        FormatError: the file is missing or invalid (naming the path).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: index file not found") from None
    return parse_index(data, source=str(path))


def dump_index(entries: Sequence[ShardEntry]) -> str:
    """Serialise like mosaic's writers: ``json.dumps(obj, sort_keys=True)``, one line."""
    return json.dumps({"shards": [e.to_dict() for e in entries], "version": INDEX_VERSION}, sort_keys=True)


def dump_merged_index(shards: Sequence[Mapping[str, Any]]) -> str:
    """Serialise like mosaic's ``merge_index``: ``{"version": 2, "shards": [...]}``, no key sorting."""
    return json.dumps({"version": INDEX_VERSION, "shards": list(shards)})


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename.

    Readers never observe a half-written index.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; an index must be readable like any written file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
