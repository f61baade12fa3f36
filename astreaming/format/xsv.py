"""CSV/TSV/XSV shards (reference §1.10): header line, one separator-joined line per sample, meta file.

There is no quoting or escaping (as in mosaic): the writer refuses values and names that contain the
separator or the newline, and the reader refuses lines with the wrong number of fields.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Callable, Mapping
from typing import Any

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import XSVEntry
from astreaming.format.meta import LineShardReader, build_meta
from astreaming.format.writer import MissingColumnError, ShardWriter

__all__ = ["CSVWriter", "TSVWriter", "XSVReader", "XSVWriter", "header_line"]

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float}
_DECODERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float}


def header_line(names: tuple[str, ...] | list[str], separator: str, newline: str) -> bytes:
    """The first line of a data file: the sorted column names."""
    return (separator.join(names) + newline).encode("utf-8")


class XSVWriter(ShardWriter):
    """Write samples as separator-delimited lines.

    Args:
        columns: column name -> ``"str"``, ``"int"`` or ``"float"``.
        separator: field separator (stored in the index as ``separator``).
        newline: line terminator (default ``"\\n"``).
        out, keep_local, compression, hashes, size_limit, **kwargs: see :class:`ShardWriter`.
    """

    format = "xsv"

    def __init__(
        self, *, columns: Mapping[str, str], separator: str, newline: str = "\n", **kwargs: Any
    ) -> None:
        if not isinstance(columns, Mapping) or not columns:
            raise ConfigError(f"columns: expected a non-empty mapping of name -> encoding, got {columns!r}")
        if not isinstance(separator, str) or not separator:
            raise ConfigError(f"separator: expected a non-empty string, got {separator!r}")
        if not isinstance(newline, str) or not newline:
            raise ConfigError(f"newline: expected a non-empty string, got {newline!r}")
        if separator in newline or newline in separator:
            raise ConfigError(f"separator {separator!r} and newline {newline!r} must not contain each other")
        for name, enc in columns.items():
            if enc not in _TYPES:
                raise ConfigError(
                    f"columns: column {name!r} has encoding {enc!r}; supported: str, int, float"
                )
            if separator in name or newline in name:
                raise ConfigError(f"columns: column name {name!r} contains the separator or the newline")
        self.column_names = sorted(columns)
        self.column_encodings = [columns[name] for name in self.column_names]
        self.separator = separator
        self.newline = newline
        self._checks = [
            (name, _TYPES[enc]) for name, enc in zip(self.column_names, self.column_encodings, strict=True)
        ]
        self._header = header_line(self.column_names, separator, newline)
        super().__init__(**kwargs)

    def config(self) -> dict[str, Any]:
        """Writer config, stored in every meta file and index entry (``separator`` only for xsv)."""
        out = super().config()
        out["column_encodings"] = list(self.column_encodings)
        out["column_names"] = list(self.column_names)
        out["newline"] = self.newline
        if self.format == "xsv":
            out["separator"] = self.separator
        return out

    def encode_sample(self, sample: Mapping[str, Any]) -> bytes:
        """``separator.join(str(value) ...) + newline`` in sorted column order.

        Raises:
            MissingColumnError: a column is missing.
            FormatError: a value has the wrong type or contains the separator or newline.
        """
        fields = []
        for name, kind in self._checks:
            if name not in sample:
                raise MissingColumnError(f"sample is missing column {name!r}")
            value = sample[name]
            if not isinstance(value, kind):
                raise FormatError(f"column {name!r}: expected {kind.__name__}, got {type(value).__name__}")
            text = str(value)
            if self.separator in text or self.newline in text:
                raise FormatError(f"column {name!r}: value {text!r} contains the separator or the newline")
            fields.append(text)
        return (self.separator.join(fields) + self.newline).encode("utf-8")

    def write_shard(self, index: int, samples: list[bytes]) -> XSVEntry:
        """Write ``shard.{index:05}.{format}`` (header + lines) and its ``.meta``."""
        basename = f"shard.{index:05}.{self.format}"
        config_json = json.dumps(self.config(), sort_keys=True).encode("utf-8")
        raw_data, zip_data = self.emit_file(basename, b"".join([self._header, *samples]))
        meta = build_meta(len(self._header), [len(s) for s in samples], config_json)
        raw_meta, zip_meta = self.emit_file(basename + ".meta", meta)
        return XSVEntry(
            format=self.format,
            compression=self.compression,
            hashes=tuple(self.hashes),
            raw_data=raw_data,
            zip_data=zip_data,
            samples=len(samples),
            size_limit=self.size_limit,
            newline=self.newline,
            raw_meta=raw_meta,
            zip_meta=zip_meta,
            column_encodings=tuple(self.column_encodings),
            column_names=tuple(self.column_names),
            separator=self.separator,
        )


class CSVWriter(XSVWriter):
    """XSVWriter with ``separator=","`` and format ``"csv"`` (the index carries no separator)."""

    format = "csv"

    def __init__(self, *, columns: Mapping[str, str], newline: str = "\n", **kwargs: Any) -> None:
        if "separator" in kwargs:
            raise ConfigError(f"{type(self).__name__}: unknown argument 'separator' (it is fixed)")
        super().__init__(columns=columns, separator=",", newline=newline, **kwargs)


class TSVWriter(CSVWriter):
    """XSVWriter with ``separator="\\t"`` and format ``"tsv"``."""

    format = "tsv"

    def __init__(self, *, columns: Mapping[str, str], newline: str = "\n", **kwargs: Any) -> None:
        if "separator" in kwargs:
            raise ConfigError(f"{type(self).__name__}: unknown argument 'separator' (it is fixed)")
        XSVWriter.__init__(self, columns=columns, separator="\t", newline=newline, **kwargs)


class XSVReader(LineShardReader):
    """Random access to one CSV/TSV/XSV shard: ``reader[i]`` maps column names to decoded fields.

    Args:
        data: the data file (mmap or bytes), header line included.
        meta: the meta file bytes.
        entry: the shard's index entry.
        source: the data file, named in errors.
    """

    def __init__(self, data: mmap.mmap | bytes, meta: bytes, entry: XSVEntry, *, source: str) -> None:
        for name, enc in zip(entry.column_names, entry.column_encodings, strict=True):
            if enc not in _DECODERS:
                raise FormatError(f"{source}: column {name!r} has unknown encoding {enc!r} (str, int, float)")
        header = header_line(entry.column_names, entry.separator, entry.newline)
        if bytes(data[: len(header)]) != header:
            raise FormatError(
                f"{source}: header line does not match the index columns {list(entry.column_names)}"
            )
        super().__init__(data, meta, samples=entry.samples, first=len(header), source=source)
        self.entry = entry
        self._sep = entry.separator
        self._newline = entry.newline
        self._columns = list(
            zip(entry.column_names, [_DECODERS[e] for e in entry.column_encodings], strict=True)
        )

    def get_item(self, index: int) -> dict[str, Any]:
        """Decode sample ``index`` (``0 <= index < len``)."""
        try:
            text = self.get_bytes(index).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.source}: sample {index} is not valid UTF-8") from None
        if not text.endswith(self._newline):
            raise FormatError(f"{self.source}: sample {index} does not end with the newline")
        fields = text[: len(text) - len(self._newline)].split(self._sep)
        if len(fields) != len(self._columns):
            raise FormatError(
                f"{self.source}: sample {index} has {len(fields)} fields, expected {len(self._columns)}"
            )
        try:
            return {name: dec(field) for (name, dec), field in zip(self._columns, fields, strict=True)}
        except ValueError as exc:
            raise FormatError(f"{self.source}: sample {index}: {exc}") from None
