"""JSONL and CSV/TSV sources (one file or a directory of files, in sorted name order)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from astreaming.convert.fs import SourceFS
from astreaming.convert.infer import infer_json, infer_text
from astreaming.convert.sources.base import Row, Source, Unit
from astreaming.errors import FormatError

__all__ = ["CSVSource", "JSONLSource"]


def _where(path: str, line: int | None, offset: int) -> str:
    return f"{path}:{line}" if line is not None else f"{path} (line at byte {offset})"


def _loads(raw: bytes) -> Any:
    """One JSON line: UTF-8 decoded directly (json's own detection of UTF-16/32 and a BOM, which costs
    as much as the parse of a short line, only when that fails)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        return json.loads(raw)


class JSONLSource(Source):
    """One JSON object per line; blank lines are allowed. Large files split at line boundaries."""

    kind = "jsonl"
    open_schema = True

    def __init__(self, files: list[str], fs: SourceFS | None = None) -> None:
        self.files = files
        self.fs = fs or SourceFS()

    unit_cap = 64 << 20

    def units(self, max_weight: int | None) -> list[Unit]:
        out = []
        for path in self.files:
            size = self.fs.size(path)
            step = size if not max_weight or size <= max_weight else max_weight
            # A line belongs to the unit in which it starts (see rows()), so any byte boundary works.
            for start in range(0, max(size, 1), max(step, 1)):
                out.append(Unit(path, start, min(start + step, size) if step < size else -1, max(step, 1)))
        return out

    def rows(self, unit: Unit) -> Iterator[Row]:
        with self.fs.open(unit.path) as f:
            if unit.start > 0:
                # Skip the line that began before this unit: it is the previous unit's.
                f.seek(unit.start - 1)
                f.readline()
            line_no: int | None = 0 if unit.start == 0 else None
            name = self.fs.name(unit.path)
            stop = unit.stop if unit.stop >= 0 else float("inf")
            offset = f.tell()
            while offset < stop:
                raw = f.readline()
                if not raw:
                    break
                at, offset = offset, offset + len(raw)  # counted, not asked: tell() costs a call a line
                if line_no is not None:
                    line_no += 1
                if not raw.strip():
                    continue
                where = _where(name, line_no, at)
                try:
                    row = _loads(raw)
                except (ValueError, UnicodeDecodeError) as e:
                    raise FormatError(f"{where}: not valid JSON ({e})") from None
                if not isinstance(row, dict):
                    raise FormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
                yield where, row

    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        return infer_json(self.head(limit))


#: Splits a line after each ``\r`` not followed by ``\n``.
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


class CSVSource(Source):
    """Delimited text with a header line (RFC 4180 quoting: a quoted field may hold newlines).

    Lines end at ``\n``, ``\r\n`` or a lone ``\r`` (as the csv module reads them) and are parsed by the
    csv module. A file larger than a work unit is cut at record boundaries that a pre-scan finds with the same
    parser, so every unit starts where a record starts and the rows are those of one sequential read.
    """

    kind = "csv"
    unit_cap = 64 << 20

    def __init__(self, files: list[str], delimiter: str = ",", fs: SourceFS | None = None) -> None:
        self.files = files
        self.delimiter = delimiter
        self.fs = fs or SourceFS()

    def units(self, max_weight: int | None) -> list[Unit]:
        out = []
        for path in self.files:
            size = self.fs.size(path)
            if not max_weight or size <= max_weight:
                out.append(Unit(path, weight=max(size, 1)))
                continue
            cuts = self._record_starts(path, max_weight)
            bounds = [0, *[c for c, _ in cuts], size]
            lines = [1, *[n for _, n in cuts]]
            for k in range(len(bounds) - 1):
                stop = -1 if k == len(bounds) - 2 else bounds[k + 1]
                out.append(Unit(path, bounds[k], stop, max(bounds[k + 1] - bounds[k], 1), lines[k]))
        return out

    def _record_starts(self, path: str, step: int) -> list[tuple[int, int]]:
        """(byte offset, line number) of the first record starting at or after each multiple of ``step``."""
        cuts: list[tuple[int, int]] = []
        target = step
        for offset, line, _ in self._records(path, 0, 1):
            if offset >= target:
                cuts.append((offset, line))
                target = (offset // step + 1) * step
        return cuts

    def _records(self, path: str, start: int, first_line: int) -> Iterator[tuple[int, int, list[str]]]:
        """(byte offset, line number, fields) of each record from ``start`` (a record start), header too."""
        name = self.fs.name(path)
        with self.fs.open(path) as f:
            f.seek(start)
            where = [start, first_line]  # offset and line number of the next line to read

            def lines() -> Iterator[str]:
                for raw in iter(f.readline, b""):
                    # A lone \r ends a line too (old Mac files), as the csv module reads a file opened
                    # with newline="": split after it, keeping \r\n together.
                    for piece in _LONE_CR.split(raw) if b"\r" in raw else (raw,):
                        if not piece:
                            continue  # after a final \r
                        where[0] += len(piece)
                        where[1] += 1
                        yield piece.decode("utf-8")

            reader = csv.reader(lines(), delimiter=self.delimiter)
            while True:
                offset, line = where
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except (UnicodeDecodeError, csv.Error) as e:
                    raise FormatError(f"{name}:{line}: unreadable row ({e})") from None
                yield offset, line, fields

    def header(self, path: str) -> list[str]:
        """The column names of ``path``."""
        name = self.fs.name(path)
        names = next((fields for _, _, fields in self._records(path, 0, 1)), None)
        if names is None:
            raise FormatError(f"{name}: empty file (a header line is required)")
        if len(set(names)) != len(names) or not all(names):
            raise FormatError(f"{name}:1: column names must be unique and non-empty, got {names}")
        return names

    def rows(self, unit: Unit) -> Iterator[Row]:
        names = self.header(unit.path)
        first = self.header(self.files[0])
        name = self.fs.name(unit.path)
        if names != first:
            raise FormatError(f"{name}: header {names} differs from {self.fs.name(self.files[0])}'s {first}")
        records = self._records(unit.path, unit.start, unit.line)
        if unit.start == 0:
            next(records)  # the header
        for offset, line, fields in records:
            if 0 <= unit.stop <= offset:
                return
            if not fields:
                continue
            where = f"{name}:{line}"
            if len(fields) != len(names):
                raise FormatError(f"{where}: {len(fields)} fields, the header has {len(names)}")
            yield where, dict(zip(names, fields, strict=True))

    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        rows: Iterator[dict[str, Any]] = self.head(limit)
        return infer_text(self.header(self.files[0]), rows)
