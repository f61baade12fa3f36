"""Conversion sources and the detection of a source's kind from its path."""

from __future__ import annotations

import os

from astreaming.convert.sources.base import Row, Source, Unit, split_units
from astreaming.convert.sources.images import ImageFolderSource
from astreaming.convert.sources.parquet import ParquetSource
from astreaming.convert.sources.text import CSVSource, JSONLSource
from astreaming.errors import ConfigError, ObjectNotFound

__all__ = ["SOURCE_KINDS", "Row", "Source", "Unit", "open_source", "split_units"]

#: ``--format`` values, and the file extensions that select each when it is not given.
SOURCE_KINDS = {
    "imagefolder": (),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet", ".pq"),
}


def _kind_of(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return next((kind for kind, exts in SOURCE_KINDS.items() if ext in exts), None)


def _build(kind: str, src: str, files: list[str]) -> Source:
    if kind == "imagefolder":
        return ImageFolderSource(src)
    if not files:
        raise ConfigError(f"convert: no {kind} files in {src}")
    if kind == "jsonl":
        return JSONLSource(files)
    if kind in ("csv", "tsv"):
        return CSVSource(files, "\t" if kind == "tsv" else ",")
    return ParquetSource(files)


def open_source(src: str, kind: str | None = None) -> Source:
    """The source at local path ``src``: a file, a directory of files of one kind, or an image folder.

    Raises:
        ObjectNotFound: ``src`` does not exist.
        ConfigError: The kind cannot be told (pass ``kind``), or a directory mixes kinds.
    """
    if kind is not None and kind not in SOURCE_KINDS:
        raise ConfigError(f"--format: unknown source format {kind!r}; expected one of {list(SOURCE_KINDS)}")
    if not os.path.exists(src):
        raise ObjectNotFound(f"convert: {src} does not exist", url=src)
    if os.path.isfile(src):
        found = kind or _kind_of(src)
        if found is None or found == "imagefolder":
            raise ConfigError(
                f"convert: cannot tell the format of {src} from its name; pass --format "
                f"({', '.join(k for k in SOURCE_KINDS if k != 'imagefolder')})"
            )
        return _build(found, src, [src])
    entries = sorted(e for e in os.listdir(src) if not e.startswith("."))
    files = [os.path.join(src, e) for e in entries if os.path.isfile(os.path.join(src, e))]
    if kind is not None:
        exts = SOURCE_KINDS[kind]
        return _build(kind, src, [f for f in files if os.path.splitext(f)[1].lower() in exts])
    kinds = {k for k in map(_kind_of, files) if k is not None}
    if len(kinds) > 1:
        raise ConfigError(f"convert: {src} holds files of several formats ({sorted(kinds)}); pass --format")
    if kinds:
        found = kinds.pop()
        return _build(found, src, [f for f in files if _kind_of(f) == found])
    if any(os.path.isdir(os.path.join(src, e)) for e in entries):
        return ImageFolderSource(src)
    raise ConfigError(f"convert: {src} holds no JSONL, CSV, TSV or Parquet file and no class folders")
