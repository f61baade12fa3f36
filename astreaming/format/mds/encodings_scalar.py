"""Scalar-like MDS encodings: bytes, str, int, numpy scalars, str_int/str_float/str_decimal, json, pkl."""

from __future__ import annotations

import json
import pickle
from typing import TYPE_CHECKING, Any

import numpy as np

from astreaming.errors import FormatError
from astreaming.format.mds.encodings_base import EncodingBase

if TYPE_CHECKING:
    from decimal import Decimal

_json_dumps = json.dumps
_json_loads = json.loads
_frombuffer = np.frombuffer


class BytesEncoding(EncodingBase):
    """``bytes``: stored verbatim; decodes to ``bytes``."""

    name = "bytes"

    def _encode(self, value: Any) -> bytes:
        # Only ``bytes`` passes through in the base class (as in mosaic); other buffers are accepted here.
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        raise self._reject(value, "bytes")

    def decode(self, data: bytes | memoryview) -> bytes:
        return bytes(data)


class StrEncoding(EncodingBase):
    """``str``: UTF-8; decodes to ``str``."""

    name = "str"

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise self._reject(value, "str")
        return value.encode("utf-8")

    def decode(self, data: bytes | memoryview) -> str:
        # bytes.decode is about twice as fast as str(data, "utf-8") on the common bytes input.
        return data.decode("utf-8") if type(data) is bytes else str(data, "utf-8")


class IntEncoding(EncodingBase):
    """``int``: a Python int stored as little-endian int64; decodes to a Python ``int``."""

    name = "int"
    size = 8

    def _encode(self, value: Any) -> bytes:
        # mosaic accepts only Python ints here (numpy integers are rejected); bool is an int.
        if not isinstance(value, int):
            raise self._reject(value, "a Python int")
        return int(value).to_bytes(8, "little", signed=True)

    def decode(self, data: bytes | memoryview) -> int:
        return int.from_bytes(data, "little", signed=True)


class NumpyScalarEncoding(EncodingBase):
    """``int8`` ... ``float64``: one little-endian numpy scalar; decodes to the numpy scalar type."""

    def __init__(self, dtype_name: str) -> None:
        self.name = dtype_name
        self._dtype = np.dtype(dtype_name).newbyteorder("<")
        self._type = self._dtype.type
        self.size = self._dtype.itemsize
        self._is_int = self._dtype.kind in "iu"

    def _encode(self, value: Any) -> bytes:
        # numpy would turn None into NaN and a list into an array: neither is a scalar value.
        if (
            value is None
            or isinstance(value, (list, tuple, dict, set))
            or (isinstance(value, np.ndarray) and value.ndim)
        ):
            raise self._reject(value, "a number")
        if self._is_int:
            # Go through a Python int so that numpy range-checks it: np.int8(np.int64(200)) would
            # silently wrap to -56 (mosaic stores that); an out-of-range value is an error here.
            if isinstance(value, str):
                value = int(value, 10)
            value = int(value)
        out = self._type(value)
        if not isinstance(out, np.generic):
            raise self._reject(value, "a number")
        data: bytes = out.tobytes()
        return data

    def decode(self, data: bytes | memoryview) -> Any:
        return _frombuffer(data, self._dtype, 1)[0]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The stored (little-endian) numpy dtype."""
        return self._dtype


class StrIntEncoding(EncodingBase):
    """``str_int``: ``str(int)`` in UTF-8; decodes to ``int``."""

    name = "str_int"

    def _encode(self, value: Any) -> bytes:
        # bool is an int, but str(True) == "True" would not decode: reject it rather than store it.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._reject(value, "a Python int")
        return str(value).encode("utf-8")

    def decode(self, data: bytes | memoryview) -> int:
        return int(str(data, "utf-8"))


class StrFloatEncoding(EncodingBase):
    """``str_float``: ``str(float)`` in UTF-8; decodes to ``float``."""

    name = "str_float"

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, float):
            raise self._reject(value, "a Python float")
        return str(float(value)).encode("utf-8")

    def decode(self, data: bytes | memoryview) -> float:
        return float(str(data, "utf-8"))


class StrDecimalEncoding(EncodingBase):
    """``str_decimal``: ``str(Decimal)`` in UTF-8; decodes to ``decimal.Decimal``."""

    name = "str_decimal"

    def _encode(self, value: Any) -> bytes:
        from decimal import Decimal  # imported on use: decimal is ~0.3 MB resident

        if not isinstance(value, Decimal):
            raise self._reject(value, "a decimal.Decimal")
        return str(value).encode("utf-8")

    def decode(self, data: bytes | memoryview) -> Decimal:
        from decimal import Decimal

        return Decimal(str(data, "utf-8"))


class JSONEncoding(EncodingBase):
    """``json``: ``json.dumps`` with its defaults (ensure_ascii, ``", "``/``": "``); ndarray -> tolist()."""

    name = "json"

    def _encode(self, value: Any) -> bytes:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        return _json_dumps(value).encode("utf-8")

    def decode(self, data: bytes | memoryview) -> Any:
        return _json_loads(str(data, "utf-8"))


# mosaic calls pickle.dumps with the default protocol, which is 4 on the Pythons it supports (3.8-3.13);
# pinning it keeps the bytes identical when the default moves (5 from Python 3.14).
_PICKLE_PROTOCOL = 4


class PickleEncoding(EncodingBase):
    """``pkl``: ``pickle.dumps`` (protocol 4, mosaic's default). Unsafe: decoded only when allowed."""

    name = "pkl"
    unsafe = True

    def _encode(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as err:
            raise FormatError(f"cannot pickle {type(value).__name__} value for MDS 'pkl': {err}") from err

    def decode(self, data: bytes | memoryview) -> Any:
        try:
            return pickle.loads(data)
        except Exception as err:  # unpickling garbage can raise almost anything
            raise FormatError(f"MDS 'pkl' value does not unpickle: {type(err).__name__}: {err}") from err


NUMPY_SCALAR_NAMES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
