"""The MDS ``ndarray`` encoding in its three spec forms.

``ndarray`` (dtype and shape stored per value), ``ndarray:<dtype>`` (shape stored per value) and
``ndarray:<dtype>:<d0>,<d1>,...`` (nothing stored but the data: a fixed-size column).

Layout of a value: ``[dtype code: u8]`` when the dtype is dynamic, then ``[(ndim << 2) | shape code: u8]``
and ``ndim`` unsigned shape entries (u8/u16/u32/u64 per the code: the smallest type that holds the largest
dimension) when the shape is dynamic, then ``array.tobytes()`` (C order, little-endian).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from astreaming.errors import FormatError
from astreaming.format.mds.encodings_base import EncodingBase

DTYPE_CODES: dict[str, int] = {
    "uint8": 8,
    "int8": 9,
    "uint16": 16,
    "int16": 17,
    "float16": 18,
    "uint32": 32,
    "int32": 33,
    "float32": 34,
    "uint64": 64,
    "int64": 65,
    "float64": 66,
}
_LE_DTYPES: dict[str, np.dtype[Any]] = {n: np.dtype(n).newbyteorder("<") for n in DTYPE_CODES}
_CODE_TO_DTYPE: dict[int, np.dtype[Any]] = {c: _LE_DTYPES[n] for n, c in DTYPE_CODES.items()}
_SHAPE_FORMATS = "BHIQ"  # struct letters of shape codes 0..3 (uint8/16/32/64)
_SHAPE_ITEMSIZE = (1, 2, 4, 8)
_MAX_NDIM = 63  # six bits of the shape byte

_ndarray = np.ndarray
# Shape byte -> compiled unpacker of the shape that follows it (at most 256 entries).
_SHAPE_UNPACKERS: dict[int, Callable[[bytes | memoryview, int], tuple[int, ...]]] = {}


def _shape_header(shape: tuple[int, ...]) -> bytes:
    biggest = max(shape)
    code = 0 if biggest < 1 << 8 else 1 if biggest < 1 << 16 else 2 if biggest < 1 << 32 else 3
    return struct.pack(f"<B{len(shape)}{_SHAPE_FORMATS[code]}", (len(shape) << 2) | code, *shape)


class NDArrayEncoding(EncodingBase):
    """``ndarray[:dtype[:shape]]``: a numpy array; decodes to a read-only view of the stored bytes."""

    def __init__(self, dtype: str | None = None, shape: tuple[int, ...] | None = None) -> None:
        if shape is not None and dtype is None:
            raise FormatError("MDS ndarray encoding: a static shape needs a static dtype")
        if dtype is not None and dtype not in DTYPE_CODES:
            raise FormatError(
                f"MDS ndarray encoding: unsupported dtype {dtype!r} (supported: {', '.join(DTYPE_CODES)})"
            )
        if shape is not None and (not shape or len(shape) > _MAX_NDIM or any(d <= 0 for d in shape)):
            raise FormatError(f"MDS ndarray encoding: invalid shape {shape!r} (1..63 positive dimensions)")
        self.dtype_name = dtype
        self.shape = shape
        self._dtype = _LE_DTYPES[dtype] if dtype is not None else None
        parts = ["ndarray"]
        if dtype is not None:
            parts.append(dtype)
        if shape is not None:
            parts.append(",".join(map(str, shape)))
        self.name = ":".join(parts)
        if self._dtype is not None and shape is not None:
            self.size = math.prod(shape) * self._dtype.itemsize

    @classmethod
    def from_config(cls, config: str | None) -> NDArrayEncoding:
        """Builds the encoding from the text after ``ndarray:`` (None for plain ``ndarray``)."""
        if config is None:
            return cls()
        parts = config.split(":")
        if len(parts) > 2 or not parts[0]:
            raise FormatError("expected ndarray[:dtype[:d0,d1,...]]")
        shape: tuple[int, ...] | None = None
        if len(parts) == 2:
            try:
                shape = tuple(int(d) for d in parts[1].split(","))
            except ValueError:
                raise FormatError(f"shape {parts[1]!r} must be comma-separated integers") from None
        return cls(parts[0], shape)

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """The stored (little-endian) numpy dtype of a column with a static dtype, else None."""
        return self._dtype

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, np.ndarray):
            raise self._reject(value, "a numpy.ndarray")
        dtype_name = value.dtype.name
        if dtype_name not in DTYPE_CODES:
            raise FormatError(
                f"MDS '{self.name}' encoding: unsupported dtype {value.dtype} "
                f"(supported: {', '.join(DTYPE_CODES)})"
            )
        if value.dtype.byteorder == ">":
            # mosaic writes big-endian arrays' bytes as if they were little-endian (a corrupt value);
            # store the same numbers in the on-disk byte order instead.
            value = value.astype(_LE_DTYPES[dtype_name])
        if self.dtype_name is not None and dtype_name != self.dtype_name:
            raise FormatError(f"MDS '{self.name}' encoding: dtype {dtype_name} does not match the column")
        if self.shape is not None:
            if value.shape != self.shape:
                raise FormatError(
                    f"MDS '{self.name}' encoding: shape {value.shape} does not match the column {self.shape}"
                )
            data: bytes = value.tobytes()
            return data
        if value.ndim == 0:
            raise FormatError(f"MDS '{self.name}' encoding: 0-d arrays cannot be stored with a dynamic shape")
        if value.ndim > _MAX_NDIM:
            raise FormatError(f"MDS '{self.name}' encoding: {value.ndim} dimensions (at most {_MAX_NDIM})")
        if value.size == 0:
            raise FormatError(f"MDS '{self.name}' encoding: zero-size array of shape {value.shape}")
        header = _shape_header(value.shape)
        if self.dtype_name is None:
            header = bytes((DTYPE_CODES[dtype_name],)) + header
        payload: bytes = value.tobytes()
        return header + payload

    def decode(self, data: bytes | memoryview) -> np.ndarray[Any, Any]:
        try:
            if self.size is not None:
                if len(data) != self.size:
                    raise ValueError(f"expected {self.size} bytes")
                arr = _ndarray(self.shape, self._dtype, data)  # type: ignore[arg-type]
            else:
                arr = self._decode_dynamic(data)
        except (ValueError, IndexError, struct.error, TypeError) as err:
            raise FormatError(f"malformed MDS '{self.name}' value ({len(data)} bytes): {err}") from err
        if type(data) is not bytes and not (type(data) is memoryview and data.readonly):
            # A view of a writable buffer would be writable; mosaic always hands out read-only arrays.
            # (Setting the flag costs ~200 ns, so it is skipped when the buffer is read-only anyway.)
            arr.flags.writeable = False
        return arr

    def _decode_dynamic(self, data: bytes | memoryview) -> np.ndarray[Any, Any]:
        pos = 0
        dtype = self._dtype
        if dtype is None:
            code = data[0]
            dtype = _CODE_TO_DTYPE.get(code)
            if dtype is None:
                raise ValueError(f"unknown dtype code {code}")
            pos = 1
        byte = data[pos]
        unpack = _SHAPE_UNPACKERS.get(byte)
        if unpack is None:
            unpack = _SHAPE_UNPACKERS[byte] = struct.Struct(
                f"<{byte >> 2}{_SHAPE_FORMATS[byte & 3]}"
            ).unpack_from
        shape = unpack(data, pos + 1)
        pos += 1 + (byte >> 2) * _SHAPE_ITEMSIZE[byte & 3]
        count = math.prod(shape)
        if len(data) - pos != count * dtype.itemsize:
            raise ValueError(
                f"shape {shape} needs {count * dtype.itemsize} data bytes, found {len(data) - pos}"
            )
        # ndarray(shape, dtype, buffer, offset) builds the view in one step (about half the cost of
        # frombuffer + reshape); the buffer size was checked above.
        return _ndarray(shape, dtype, data, pos)
