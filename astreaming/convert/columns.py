"""Column specs for conversion: the ``--columns name:encoding,...`` syntax and value coercion.

A source yields Python values (strings from CSV, JSON values, Arrow values, image file bytes); the MDS
encodings accept specific types. :func:`coercer` returns, per encoding, the function that turns a source
value into one the encoding takes, so a user's override (``--columns id:int32`` on a CSV column) works
without a separate cast step.
"""

from __future__ import annotations

import decimal
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from astreaming.errors import ConfigError, FormatError
from astreaming.format.mds.encodings import get_encoding

__all__ = ["coercer", "parse_columns"]

_INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_FLOATS = ("float16", "float32", "float64")
_MAGIC = {"jpeg": (b"\xff\xd8\xff",), "png": (b"\x89PNG\r\n\x1a\n",)}


def parse_columns(text: str | None) -> dict[str, str]:
    """Parse ``name:encoding,name:encoding`` (an ndarray shape's commas stay with its encoding).

    ``"a:int,x:ndarray:int16:2,3,s:str"`` -> ``{"a": "int", "x": "ndarray:int16:2,3", "s": "str"}``.

    Raises:
        ConfigError: A malformed item, a repeated column, or an unknown encoding (naming it).
    """
    if not text:
        return {}
    items: list[str] = []
    for piece in text.split(","):
        # A piece without ":" continues the previous item's ndarray shape ("2,3").
        if items and ":" not in piece and piece.strip().isdigit():
            items[-1] += "," + piece.strip()
        else:
            items.append(piece.strip())
    out: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition(":")
        if not sep or not name or not spec:
            raise ConfigError(f"--columns: expected name:encoding, got {item!r}")
        if name in out:
            raise ConfigError(f"--columns: column {name!r} given twice")
        try:
            get_encoding(spec)
        except (ConfigError, FormatError) as e:
            raise ConfigError(f"--columns: column {name!r}: {e}") from None
        out[name] = spec
    return out


def _image(kind: str) -> Callable[[Any], Any]:
    magics = _MAGIC[kind]

    def coerce(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if data.startswith(magics):
                return data  # stored as is: the bytes of the file
            # Another image format: decode it so the encoding re-encodes it as `kind`.
            from PIL import Image

            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception as e:
                raise ValueError(f"not a readable image ({e})") from None
            return image.convert("RGB") if kind == "jpeg" and image.mode not in ("RGB", "L") else image
        return value

    return coerce


def _ndarray(spec: str) -> Callable[[Any], Any]:
    parts = spec.split(":")
    dtype = np.dtype(parts[1]) if len(parts) > 1 and parts[1] else None

    def coerce(value: Any) -> Any:
        if isinstance(value, np.ndarray) and (dtype is None or value.dtype == dtype):
            return value
        if isinstance(value, str):
            value = json.loads(value)
        return np.asarray(value, dtype=dtype)

    return coerce


def _from_text(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda v: parse(v) if isinstance(v, str) else v


def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, str):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _to_str(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return value
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def _to_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value) if isinstance(value, (bytearray, memoryview)) else value


def _identity(value: Any) -> Any:
    return value


def coercer(spec: str) -> Callable[[Any], Any]:
    """The function turning a source value into what encoding ``spec`` stores."""
    name = spec.split(":", 1)[0]
    if name in _MAGIC:
        return _image(name)
    if name == "ndarray":
        return _ndarray(spec)
    if name == "int" or name in _INTS:
        return _to_int
    if name in _FLOATS:
        return _to_float
    if name == "str":
        return _to_str
    if name == "bytes":
        return _to_bytes
    if name == "str_int":
        return _from_text(int)
    if name == "str_float":
        return _from_text(float)
    if name == "str_decimal":
        return _from_text(decimal.Decimal)
    return _identity


def coercers(columns: Mapping[str, str]) -> dict[str, Callable[[Any], Any]]:
    """:func:`coercer` of every column."""
    return {name: coercer(spec) for name, spec in columns.items()}
