"""JSONL shards (reference §1.9): one ``json.dumps(sample, sort_keys=True)`` line per sample + meta file."""

from __future__ import annotations

import json
import mmap
from collections.abc import Mapping
from typing import Any

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import JSONEntry
from astreaming.format.meta import LineShardReader, build_meta
from astreaming.format.writer import MissingColumnError, ShardWriter

__all__ = ["JSONReader", "JSONWriter"]

# The JSON column types and the Python types a value must have (bool passes as int, as in mosaic).
_JSON_TYPES: dict[str, type] = {"str": str, "int": int, "float": float}


class JSONWriter(ShardWriter):
    """Write samples as JSON lines.

    Args:
        columns: column name -> ``"str"``, ``"int"`` or ``"float"``; values are type-checked.
        newline: line terminator (default ``"\\n"``).
        out, keep_local, compression, hashes, size_limit, **kwargs: see :class:`ShardWriter`.
    """

    format = "json"

    def __init__(self, *, columns: Mapping[str, str], newline: str = "\n", **kwargs: Any) -> None:
        if not isinstance(columns, Mapping) or not columns:
            raise ConfigError(f"columns: expected a non-empty mapping of name -> encoding, got {columns!r}")
        for name, enc in columns.items():
            if enc not in _JSON_TYPES:
                raise ConfigError(
                    f"columns: column {name!r} has encoding {enc!r}; JSON supports str, int, float"
                )
        if not isinstance(newline, str) or not newline:
            raise ConfigError(f"newline: expected a non-empty string, got {newline!r}")
        self.columns = dict(columns)
        self.newline = newline
        self._checks = [(name, _JSON_TYPES[enc]) for name, enc in self.columns.items()]
        super().__init__(**kwargs)

    def config(self) -> dict[str, Any]:
        """Writer config, stored in every meta file and index entry."""
        out = super().config()
        out["columns"] = dict(self.columns)
        out["newline"] = self.newline
        return out

    def encode_sample(self, sample: Mapping[str, Any]) -> bytes:
        """``json.dumps({col: value}, sort_keys=True) + newline`` in UTF-8.

        Raises:
            MissingColumnError: a column is missing.
            FormatError: a value does not have its column's type.
        """
        obj = {}
        for name, kind in self._checks:
            if name not in sample:
                raise MissingColumnError(f"sample is missing column {name!r}")
            value = sample[name]
            if not isinstance(value, kind):
                raise FormatError(f"column {name!r}: expected {kind.__name__}, got {type(value).__name__}")
            obj[name] = value
        return (json.dumps(obj, sort_keys=True) + self.newline).encode("utf-8")

    def write_shard(self, index: int, samples: list[bytes]) -> JSONEntry:
        """Write ``shard.{index:05}.json`` and its ``.meta``."""
        basename = f"shard.{index:05}.json"
        config_json = json.dumps(self.config(), sort_keys=True).encode("utf-8")
        raw_data, zip_data = self.emit_file(basename, b"".join(samples))
        meta = build_meta(0, [len(s) for s in samples], config_json)
        raw_meta, zip_meta = self.emit_file(basename + ".meta", meta)
        return JSONEntry(
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
            columns=dict(self.columns),
        )


class JSONReader(LineShardReader):
    """Random access to one JSONL shard: ``reader[i]`` is ``json.loads`` of line ``i`` (all its keys).

    Args:
        data: the data file (mmap or bytes).
        meta: the meta file bytes.
        entry: the shard's index entry.
        source: the data file, named in errors.
    """

    def __init__(self, data: mmap.mmap | bytes, meta: bytes, entry: JSONEntry, *, source: str) -> None:
        super().__init__(data, meta, samples=entry.samples, first=0, source=source)
        self.entry = entry
        self._newline = entry.newline.encode("utf-8")

    def get_item(self, index: int) -> dict[str, Any]:
        """Decode sample ``index`` (``0 <= index < len``)."""
        line = self.get_bytes(index)
        # Strip the terminator first: mosaic parses it along with the line, which only works when the
        # newline is JSON whitespace.
        if not line.endswith(self._newline):
            raise FormatError(f"{self.source}: sample {index} does not end with the newline")
        try:
            obj = json.loads(line[: len(line) - len(self._newline)])
        except ValueError as exc:
            raise FormatError(f"{self.source}: sample {index} is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise FormatError(f"{self.source}: sample {index} is not a JSON object")
        return obj
