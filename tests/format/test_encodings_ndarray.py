"""The ndarray encoding: byte layout, dtype and shape codes, the three spec forms, read-only views."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from astreaming.errors import FormatError
from astreaming.format.mds.encodings import get_encoding

# Reference §1.5: the one-byte dtype codes.
DTYPE_CODES = {
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

settings.register_profile("astreaming-ndarray", max_examples=60, deadline=None)
settings.load_profile("astreaming-ndarray")

ARRAYS = st.sampled_from(sorted(DTYPE_CODES)).flatmap(
    lambda name: hnp.arrays(
        np.dtype(name), hnp.array_shapes(min_dims=1, max_dims=5, min_side=1, max_side=6), unique=False
    )
)


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_reference_example_bytes() -> None:
    """Reference §1.3: a uint16 [0, 1] in a dynamic ndarray column is 10 04 02 0000 0100."""
    data = get_encoding("ndarray").encode(np.array([0, 1], np.uint16))
    assert data.hex() == "1004020000" + "0100"


@given(ARRAYS)
def test_dynamic_round_trip_and_layout(arr: np.ndarray[Any, Any]) -> None:
    enc = get_encoding("ndarray")
    data = enc.encode(arr)
    assert data[0] == DTYPE_CODES[arr.dtype.name]
    assert data[1] == arr.ndim << 2  # every side <= 6: shape code 0 (uint8)
    assert data[2 : 2 + arr.ndim] == bytes(arr.shape)
    assert data[2 + arr.ndim :] == np.ascontiguousarray(arr).tobytes()
    out = enc.decode(data)
    assert _same(out, arr)
    assert not out.flags.writeable


@given(ARRAYS)
def test_static_dtype_round_trip(arr: np.ndarray[Any, Any]) -> None:
    enc = get_encoding(f"ndarray:{arr.dtype.name}")
    data = enc.encode(arr)
    assert data[0] == arr.ndim << 2
    assert data[1 + arr.ndim :] == arr.tobytes()
    assert _same(enc.decode(data), arr)


@given(ARRAYS)
def test_static_shape_round_trip_has_no_header(arr: np.ndarray[Any, Any]) -> None:
    spec = f"ndarray:{arr.dtype.name}:{','.join(map(str, arr.shape))}"
    enc = get_encoding(spec)
    assert enc.size == arr.nbytes
    data = enc.encode(arr)
    assert data == arr.tobytes()
    out = enc.decode(data)
    assert _same(out, arr)
    assert not out.flags.writeable


@pytest.mark.parametrize(
    ("shape", "code", "fmt"),
    [((255,), 0, "B"), ((256,), 1, "H"), ((2, 65535), 1, "H"), ((65536,), 2, "I"), ((1, 1, 65536), 2, "I")],
)
def test_shape_code_is_the_smallest_type_holding_the_largest_dimension(
    shape: tuple[int, ...], code: int, fmt: str
) -> None:
    arr = np.zeros(shape, np.uint8)
    data = get_encoding("ndarray:uint8").encode(arr)
    assert data[0] == (len(shape) << 2) | code
    assert struct.unpack_from(f"<{len(shape)}{fmt}", data, 1) == shape
    assert _same(get_encoding("ndarray:uint8").decode(data), arr)


def test_decode_accepts_uint64_shape_code() -> None:
    # No array small enough for a test needs code 3 on encode, but mosaic's decoder accepts it.
    data = bytes([9, (1 << 2) | 3]) + struct.pack("<Q", 2) + b"\x01\xff"
    out = get_encoding("ndarray").decode(data)
    assert out.dtype == np.int8 and out.tolist() == [1, -1]


def test_fortran_and_non_contiguous_inputs_store_c_order() -> None:
    arr = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    for value in (arr, np.arange(12, dtype=np.int32)[::2].reshape(2, 3)):
        out = get_encoding("ndarray:int32:2,3").decode(get_encoding("ndarray:int32:2,3").encode(value))
        assert out.tolist() == value.tolist()


def test_big_endian_input_keeps_its_values() -> None:
    arr = np.array([1, 256, -2], dtype=">i4")
    for spec in ("ndarray", "ndarray:int32", "ndarray:int32:3"):
        out = get_encoding(spec).decode(get_encoding(spec).encode(arr))
        assert out.tolist() == [1, 256, -2]


def test_decoded_views_share_memory_and_are_read_only_even_from_writable_buffers() -> None:
    buf = bytearray(get_encoding("ndarray").encode(np.arange(4, dtype=np.int16)))
    out = get_encoding("ndarray").decode(memoryview(buf))
    assert not out.flags.writeable
    buf[-2:] = b"\x07\x00"
    assert out[-1] == 7  # a view, not a copy
    fixed = get_encoding("ndarray:int16:4").decode(memoryview(bytearray(8)))
    assert not fixed.flags.writeable


@pytest.mark.parametrize(
    ("spec", "value", "match"),
    [
        ("ndarray", [1, 2, 3], "numpy.ndarray"),
        ("ndarray", np.array([True, False]), "unsupported dtype"),
        ("ndarray", np.array([1 + 2j]), "unsupported dtype"),
        ("ndarray", np.array(["a"]), "unsupported dtype"),
        ("ndarray", np.array([object()]), "unsupported dtype"),
        ("ndarray", np.zeros((0,), np.int8), "zero-size"),
        ("ndarray", np.zeros((2, 0), np.int8), "zero-size"),
        ("ndarray:int8", np.zeros((3, 0, 2), np.int8), "zero-size"),
        ("ndarray", np.array(5, np.int32), "0-d"),
        ("ndarray:int32", np.array(5, np.int32), "0-d"),
        ("ndarray", np.zeros((1,) * 64, np.int8), "dimensions"),
        ("ndarray:int32", np.zeros(3, np.int64), "dtype int64"),
        ("ndarray:int32:3", np.zeros(3, np.int64), "dtype int64"),
        ("ndarray:int32:3", np.zeros((1, 3), np.int32), "shape"),
        ("ndarray:int32:2,3", np.zeros((3, 2), np.int32), "shape"),
    ],
)
def test_rejections(spec: str, value: Any, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        get_encoding(spec).encode(value)


@pytest.mark.parametrize(
    ("spec", "data"),
    [
        ("ndarray", b""),
        ("ndarray", bytes([7, 4, 1, 0])),  # unknown dtype code 7
        ("ndarray", bytes([8, 4, 3, 1, 2])),  # shape [3] but only 2 data bytes
        ("ndarray", bytes([8, 4, 1, 1, 2])),  # trailing byte
        ("ndarray:int16", bytes([8, 2])),  # shape says 2 int16, 1 byte left
        ("ndarray:int16:2", b"\x00\x00\x00"),
    ],
)
def test_malformed_values_raise_format_error(spec: str, data: bytes) -> None:
    with pytest.raises(FormatError, match="malformed"):
        get_encoding(spec).decode(data)
