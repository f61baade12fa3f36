"""Conversion sources and the detection of a source's kind from its path."""

from __future__ import annotations

import os

from astreaming.convert.fs import SourceFS, source_fs
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


def _ext(path: str) -> str:
    return os.path.splitext(path.split("?", 1)[0])[1].lower()  # a URL's query (a SAS token) is no extension


def _kind_of(path: str) -> str | None:
    ext = _ext(path)
    return next((kind for kind, exts in SOURCE_KINDS.items() if ext in exts), None)


def _build(kind: str, src: str, files: list[str], fs: SourceFS) -> Source:
    if kind == "imagefolder":
        return ImageFolderSource(src, fs)
    if not files:
        raise ConfigError(f"convert: no {kind} files in {fs.name(src)}")
    if kind == "jsonl":
        return JSONLSource(files, fs)
    if kind in ("csv", "tsv"):
        return CSVSource(files, "\t" if kind == "tsv" else ",", fs)
    return ParquetSource(files, fs)


def open_source(src: str, kind: str | None = None) -> Source:
    """The source at ``src``: a file, a directory of files of one kind, or an image folder.

    ``src`` is a local path or any storage URL (``s3://``, ``gs://``, ``azure://``, ``http(s)://``: one
    file, as HTTP cannot list a directory); remote files are read by range requests, not staged.

    Raises:
        ObjectNotFound: ``src`` does not exist.
        ConfigError: The kind cannot be told (pass ``kind``), or a directory mixes kinds.
    """
    if kind is not None and kind not in SOURCE_KINDS:
        raise ConfigError(f"--format: unknown source format {kind!r}; expected one of {list(SOURCE_KINDS)}")
    fs = source_fs(src)
    if src.startswith("file://"):
        src = src[len("file://") :]
    try:
        return _open(src, kind, fs)
    except BaseException:
        fs.close()  # the source that would own the client was not made
        raise


def _open(src: str, kind: str | None, fs: SourceFS) -> Source:
    what = fs.kind(src)
    if what is None:
        raise ObjectNotFound(f"convert: {fs.name(src)} does not exist", url=fs.name(src))
    if what == "file":
        found = kind or _kind_of(src)
        if found is None or found == "imagefolder":
            raise ConfigError(
                f"convert: cannot tell the format of {fs.name(src)} from its name; pass --format "
                f"({', '.join(k for k in SOURCE_KINDS if k != 'imagefolder')})"
            )
        return _build(found, src, [src], fs)
    files = [fs.join(src, rel) for rel in fs.files_below(src) if "/" not in rel]
    if kind is not None:
        exts = SOURCE_KINDS[kind]
        return _build(kind, src, [f for f in files if _ext(f) in exts], fs)
    kinds = {k for k in map(_kind_of, files) if k is not None}
    if len(kinds) > 1:
        raise ConfigError(
            f"convert: {fs.name(src)} holds files of several formats ({sorted(kinds)}); pass --format"
        )
    if kinds:
        found = kinds.pop()
        return _build(found, src, [f for f in files if _kind_of(f) == found], fs)
    if fs.dirs(src):
        return ImageFolderSource(src, fs)
    raise ConfigError(
        f"convert: {fs.name(src)} holds no JSONL, CSV, TSV or Parquet file and no class folders"
    )
