"""JSONL and CSV/TSV sources (one file or a directory of files, in sorted name order)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from astreaming.convert.infer import infer_json, infer_text
from astreaming.convert.sources.base import Row, Source, Unit
from astreaming.errors import FormatError

__all__ = ["CSVSource", "JSONLSource"]


def _where(path: str, line: int | None, offset: int) -> str:
    return f"{path}:{line}" if line is not None else f"{path} (line at byte {offset})"


class JSONLSource(Source):
    """One JSON object per line; blank lines are allowed. Large files split at line boundaries."""

    kind = "jsonl"
    open_schema = True

    def __init__(self, files: list[str]) -> None:
        self.files = files

    unit_cap = 64 << 20

    def units(self, max_weight: int | None) -> list[Unit]:
        out = []
        for path in self.files:
            size = os.path.getsize(path)
            step = size if not max_weight or size <= max_weight else max_weight
            # A line belongs to the unit in which it starts (see rows()), so any byte boundary works.
            for start in range(0, max(size, 1), max(step, 1)):
                out.append(Unit(path, start, min(start + step, size) if step < size else -1, max(step, 1)))
        return out

    def rows(self, unit: Unit) -> Iterator[Row]:
        with open(unit.path, "rb") as f:
            if unit.start > 0:
                # Skip the line that began before this unit: it is the previous unit's.
                f.seek(unit.start - 1)
                f.readline()
            line_no: int | None = 0 if unit.start == 0 else None
            while unit.stop < 0 or f.tell() < unit.stop:
                offset = f.tell()
                raw = f.readline()
                if not raw:
                    break
                if line_no is not None:
                    line_no += 1
                if not raw.strip():
                    continue
                where = _where(unit.path, line_no, offset)
                try:
                    row = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as e:
                    raise FormatError(f"{where}: not valid JSON ({e})") from None
                if not isinstance(row, dict):
                    raise FormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
                yield where, row

    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        return infer_json(self.head(limit))


class CSVSource(Source):
    """Delimited text with a header line (RFC 4180 quoting). Split by file only: a quoted field may
    hold a newline, so a byte offset is not a safe place to start reading."""

    kind = "csv"

    def __init__(self, files: list[str], delimiter: str = ",") -> None:
        self.files = files
        self.delimiter = delimiter

    def units(self, max_weight: int | None) -> list[Unit]:
        return [Unit(path, weight=os.path.getsize(path)) for path in self.files]

    def header(self, path: str) -> list[str]:
        """The column names of ``path``."""
        with open(path, newline="", encoding="utf-8") as f:
            try:
                names = next(csv.reader(f, delimiter=self.delimiter))
            except StopIteration:
                raise FormatError(f"{path}: empty file (a header line is required)") from None
            except (UnicodeDecodeError, csv.Error) as e:
                raise FormatError(f"{path}:1: unreadable header ({e})") from None
        if len(set(names)) != len(names) or not all(names):
            raise FormatError(f"{path}:1: column names must be unique and non-empty, got {names}")
        return names

    def rows(self, unit: Unit) -> Iterator[Row]:
        names = self.header(unit.path)
        first = self.header(self.files[0])
        if names != first:
            raise FormatError(f"{unit.path}: header {names} differs from {self.files[0]}'s {first}")
        with open(unit.path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            try:
                next(reader)
                for fields in reader:
                    where = f"{unit.path}:{reader.line_num}"
                    if not fields:
                        continue
                    if len(fields) != len(names):
                        raise FormatError(f"{where}: {len(fields)} fields, the header has {len(names)}")
                    yield where, dict(zip(names, fields, strict=True))
            except (UnicodeDecodeError, csv.Error) as e:
                raise FormatError(f"{unit.path}:{reader.line_num}: unreadable row ({e})") from None

    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        rows: Iterator[dict[str, Any]] = self.head(limit)
        return infer_text(self.header(self.files[0]), rows)
