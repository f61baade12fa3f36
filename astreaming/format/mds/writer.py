"""MDSWriter: writes MDS shards byte-identical to mosaicml-streaming 0.13's writer."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import MDSEntry
from astreaming.format.mds.encodings import encode_value, get_encoding
from astreaming.format.writer import MissingColumnError, ShardWriter

__all__ = ["MDSWriter"]


class _Redo(Exception):
    """A fixed-size column's value has the wrong length: let the checked loop say which."""


class MDSWriter(ShardWriter):
    """Write samples into MDS shards (reference §1.3, §7.1).

    Args:
        columns: column name -> MDS encoding spec (``"int"``, ``"str"``, ``"ndarray:float32:3,4"``...).
            Columns are stored in sorted name order.
        out, keep_local, compression, hashes, size_limit, **kwargs: see :class:`ShardWriter`.

    Example:
        >>> with MDSWriter(out="/tmp/ds", columns={"x": "int", "y": "str"}) as w:  # doctest: +SKIP
        ...     w.write({"x": 1, "y": "a"})
    """

    format = "mds"
    extra_bytes_per_sample = 4  # the sample's offset

    def __init__(self, *, columns: Mapping[str, str], **kwargs: Any) -> None:
        if not isinstance(columns, Mapping) or not columns:
            raise ConfigError(f"columns: expected a non-empty mapping of name -> encoding, got {columns!r}")
        names = sorted(columns)
        encodings = []
        for name in names:
            spec = columns[name]
            try:
                encodings.append(get_encoding(spec))
            except FormatError as exc:
                raise ConfigError(f"columns: column {name!r}: {exc}") from None
        self.column_names = names
        self.column_encodings = [columns[name] for name in names]
        self.column_sizes = [enc.size for enc in encodings]
        self._encoders = list(zip(names, encodings, strict=True))
        self._fast = [(name, enc.encode, enc.size) for name, enc in self._encoders]
        self._var_lengths = struct.Struct(f"<{sum(1 for s in self.column_sizes if s is None)}I")
        super().__init__(**kwargs)
        self._config_json = json.dumps(self.config(), sort_keys=True).encode("utf-8")

    def config(self) -> dict[str, Any]:
        """Writer config: embedded in every shard header and repeated in every index entry."""
        out = super().config()
        out["column_encodings"] = list(self.column_encodings)
        out["column_names"] = list(self.column_names)
        out["column_sizes"] = list(self.column_sizes)
        return out

    @property
    def extra_bytes_per_shard(self) -> int:
        """N, offsets[0] and the config JSON."""
        return 4 + 4 + len(self._config_json)

    def encode_sample(self, sample: Mapping[str, Any]) -> bytes:
        """Variable-size lengths as uint32, then every column's bytes, in sorted column order.

        Raises:
            MissingColumnError: a column is missing from ``sample`` (a KeyError, as mosaic).
            FormatError: a value cannot be encoded, or a fixed-size column has the wrong length.
        """
        # The common case in one tight loop; anything unusual (a missing column, a value that does not
        # encode, a fixed-size value of the wrong length) is redone by the checked loop below, which
        # raises the typed error naming the column. Encoding has no side effects, so redoing is safe.
        parts: list[bytes] = []
        lengths: list[int] = []
        try:
            for name, encode, size in self._fast:
                data = encode(sample[name])
                if size is None:
                    lengths.append(len(data))
                elif len(data) != size:
                    raise _Redo
                parts.append(data)
            return self._var_lengths.pack(*lengths) + b"".join(parts)
        except (KeyError, FormatError, _Redo):
            parts.clear()
            lengths.clear()
        for name, enc in self._encoders:
            if name not in sample:
                raise MissingColumnError(f"sample is missing column {name!r}")
            data = encode_value(enc, sample[name], column=name)
            if enc.size is None:
                lengths.append(len(data))
            parts.append(data)
        return self._var_lengths.pack(*lengths) + b"".join(parts)

    def write_shard(self, index: int, samples: list[bytes]) -> MDSEntry:
        """Lay out ``N, offsets[N+1], config, samples`` and write it as ``shard.{index:05}.mds``."""
        num = len(samples)
        header = 4 + 4 * (num + 1) + len(self._config_json)
        sizes = np.fromiter((len(s) for s in samples), np.int64, num)
        offsets = np.empty(num + 1, np.int64)
        offsets[0] = header
        np.cumsum(sizes, out=offsets[1:])
        offsets[1:] += header
        if offsets[-1] >= 1 << 32:
            # Offsets are uint32 (format limit); only reachable with size_limit=None and huge samples.
            raise FormatError(
                f"{self.local}: shard {index} would be {int(offsets[-1])} bytes, MDS allows < 4 GiB"
            )
        data = b"".join(
            [np.uint32(num).tobytes(), offsets.astype("<u4").tobytes(), self._config_json, *samples]
        )
        raw, zipped = self.emit_file(f"shard.{index:05}.mds", data)
        return MDSEntry(
            format=self.format,
            compression=self.compression,
            hashes=tuple(self.hashes),
            raw_data=raw,
            zip_data=zipped,
            samples=num,
            size_limit=self.size_limit,
            column_encodings=tuple(self.column_encodings),
            column_names=tuple(self.column_names),
            column_sizes=tuple(self.column_sizes),
        )
