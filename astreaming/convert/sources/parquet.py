"""Parquet source (``pip install 'astreaming[convert]'`` for pyarrow): one unit per row group.

Columns map from the Arrow schema, with the Spark mapping of reference §7.1 where it applies: signed and
unsigned integers and floats keep their width, strings -> ``str``, binary -> ``bytes``, decimal ->
``str_decimal``, a list of numbers -> ``ndarray:<dtype>``; booleans, nested types, dates and times, and any
column holding a null in the inferred rows -> ``json`` (dates and times as ISO strings).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from astreaming.convert.fs import SourceFS
from astreaming.convert.sources.base import Row, Source, Unit
from astreaming.errors import ConfigError, FormatError

__all__ = ["ParquetSource", "arrow_encoding"]


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "convert: Parquet needs pyarrow; install it with pip install 'astreaming[convert]'"
        ) from None
    return pq


def arrow_encoding(arrow_type: Any) -> str:
    """The MDS encoding of an Arrow type (see the module docstring)."""
    import pyarrow as pa

    t = pa.types
    if t.is_boolean(arrow_type):
        return "json"
    for width in (8, 16, 32, 64):
        if arrow_type == getattr(pa, f"int{width}")():
            return f"int{width}"
        if arrow_type == getattr(pa, f"uint{width}")():
            return f"uint{width}"
    if t.is_float16(arrow_type):
        return "float16"
    if t.is_float32(arrow_type):
        return "float32"
    if t.is_float64(arrow_type):
        return "float64"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "str"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or t.is_fixed_size_binary(arrow_type):
        return "bytes"
    if t.is_decimal(arrow_type):
        return "str_decimal"
    if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type):
        inner = arrow_type.value_type
        if (t.is_integer(inner) or t.is_floating(inner)) and not t.is_float16(inner):
            return f"ndarray:{inner.to_pandas_dtype().__name__}"
    return "json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class ParquetSource(Source):
    """One ``.parquet`` file or a directory of them (sorted by name)."""

    kind = "parquet"

    def __init__(self, files: list[str], fs: SourceFS | None = None) -> None:
        self.files = files
        self.fs = fs or SourceFS()

    def _open(self, path: str) -> Any:
        pq = _pq()
        try:
            # A local path lets pyarrow map the file; a remote one is a seekable reader of range requests.
            return pq.ParquetFile(path if type(self.fs) is SourceFS else self.fs.open(path))
        except Exception as e:
            raise FormatError(f"{self.fs.name(path)}: not a readable Parquet file ({e})") from None

    def units(self, max_weight: int | None) -> list[Unit]:
        out = []
        for path in self.files:
            meta = self._open(path).metadata
            for group in range(meta.num_row_groups):
                out.append(Unit(path, group, group + 1, meta.row_group(group).num_rows))
        return out

    def total(self) -> int | None:
        return sum(int(self._open(path).metadata.num_rows) for path in self.files)

    def rows(self, unit: Unit) -> Iterator[Row]:
        pf = self._open(unit.path)
        first = sum(pf.metadata.row_group(g).num_rows for g in range(unit.start))
        number = first
        try:
            for batch in pf.iter_batches(row_groups=[unit.start]):
                for row in batch.to_pylist():
                    yield f"{self.fs.name(unit.path)} row {number}", {k: _jsonable(v) for k, v in row.items()}
                    number += 1
        except FormatError:
            raise
        except Exception as e:
            if type(e).__module__.startswith("pyarrow"):
                raise FormatError(
                    f"{self.fs.name(unit.path)} row group {unit.start}: unreadable ({e})"
                ) from None
            raise

    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        schema = self._open(self.files[0]).schema_arrow
        for path in self.files[1:]:
            other = self._open(path).schema_arrow
            if not other.equals(schema):
                raise FormatError(
                    f"{self.fs.name(path)}: schema differs from {self.fs.name(self.files[0])}'s"
                )
        columns = {field.name: arrow_encoding(field.type) for field in schema}
        # MDS has no null: a column holding one is stored as json, which keeps None.
        for row in self.head(limit):
            for name, value in row.items():
                if value is None:
                    columns[name] = "json"
        return columns
