"""Scalar-like encodings: exact bytes, decoded types, round trips over their value spaces, rejections."""

from __future__ import annotations

import json
import math
import pickle
import struct
import warnings
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astreaming.errors import FormatError
from astreaming.format.mds.encodings import get_encoding

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
STRUCT_CODES = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint8": "B", "uint16": "H"}
STRUCT_CODES.update({"uint32": "I", "uint64": "Q", "float16": "e", "float32": "f", "float64": "d"})
FLOAT_WIDTHS = {"float16": 16, "float32": 32, "float64": 64}

settings.register_profile("astreaming-format", max_examples=60, deadline=None)
settings.load_profile("astreaming-format")


@pytest.mark.parametrize("name", sorted(INT_RANGES))
def test_integer_scalars_bytes_and_types(name: str) -> None:
    enc = get_encoding(name)
    lo, hi = INT_RANGES[name]
    for value in (lo, hi, 0, 1):
        data = enc.encode(value)
        assert data == struct.pack("<" + STRUCT_CODES[name], value)
        out = enc.decode(data)
        assert type(out) is getattr(np, name)
        assert int(out) == value


@pytest.mark.parametrize("name", sorted(INT_RANGES))
@given(data=st.data())
def test_integer_scalars_round_trip(name: str, data: st.DataObject) -> None:
    lo, hi = INT_RANGES[name]
    value = data.draw(st.integers(lo, hi))
    enc = get_encoding(name)
    out = enc.decode(enc.encode(value))
    assert type(out) is getattr(np, name) and int(out) == value
    # numpy integers of other widths are accepted when the value fits.
    assert enc.decode(enc.encode(np.int64(value) if value < 2**63 else np.uint64(value))) == out


@pytest.mark.parametrize("name", sorted(FLOAT_WIDTHS))
@given(data=st.data())
def test_float_scalars_round_trip_bit_exact(name: str, data: st.DataObject) -> None:
    value = data.draw(st.floats(width=FLOAT_WIDTHS[name]))  # type: ignore[arg-type]
    enc = get_encoding(name)
    encoded = enc.encode(value)
    assert encoded == struct.pack("<" + STRUCT_CODES[name], value)
    out = enc.decode(encoded)
    assert type(out) is getattr(np, name)
    assert out.tobytes() == encoded
    assert (math.isnan(value) and math.isnan(out)) or float(out) == value


@pytest.mark.parametrize("name", sorted(INT_RANGES))
def test_integer_scalars_reject_out_of_range_and_non_numbers(name: str) -> None:
    lo, hi = INT_RANGES[name]
    enc = get_encoding(name)
    # np.int64(200) into int8 would wrap to -56 in mosaic: refused here.
    for bad in (
        hi + 1,
        lo - 1,
        np.uint64(hi) + np.uint64(1) if hi < 2**64 - 1 else 2**64,
        None,
        "x",
        [1],
        float("nan"),
    ):
        with pytest.raises(FormatError, match=name):
            enc.encode(bad)


def test_float_scalars_reject_non_numbers() -> None:
    for bad in (None, "abc", [1.0], (2.0,), np.zeros(2)):
        with pytest.raises(FormatError, match="float32"):
            get_encoding("float32").encode(bad)


def test_float_overflow_becomes_inf_with_numpys_warning() -> None:
    # Same value as mosaic (numpy cast), and numpy says so.
    with pytest.warns(RuntimeWarning, match="overflow"):
        data = get_encoding("float16").encode(1e10)
    assert np.isinf(get_encoding("float16").decode(data))


def test_scalars_accept_numpy_scalars_and_strings_as_numpy_does() -> None:
    assert get_encoding("float32").encode(np.float32(0.1)) == np.float32(0.1).tobytes()
    assert get_encoding("int8").encode("5") == b"\x05"
    assert get_encoding("int16").encode(True) == b"\x01\x00"


@given(st.integers(-(2**63), 2**63 - 1))
def test_int_round_trip_is_python_int(value: int) -> None:
    enc = get_encoding("int")
    data = enc.encode(value)
    assert data == struct.pack("<q", value)
    out = enc.decode(data)
    assert type(out) is int and out == value
    assert enc.decode(memoryview(data)) == value


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, 1.0, "1", np.int64(1), None, Decimal(1)])
def test_int_rejects_non_python_ints_and_overflow(bad: Any) -> None:
    with pytest.raises(FormatError, match="'int'"):
        get_encoding("int").encode(bad)


@given(st.binary())
def test_bytes_round_trip(value: bytes) -> None:
    enc = get_encoding("bytes")
    assert enc.encode(value) == value
    out = enc.decode(memoryview(value))
    assert type(out) is bytes and out == value
    assert enc.encode(bytearray(value)) == value


@pytest.mark.parametrize("bad", ["text", 5, None, [1, 2]])
def test_bytes_rejects_non_bytes(bad: Any) -> None:
    with pytest.raises(FormatError, match="'bytes'"):
        get_encoding("bytes").encode(bad)


@given(st.text())
def test_str_round_trip(value: str) -> None:
    enc = get_encoding("str")
    data = enc.encode(value)
    assert data == value.encode("utf-8")
    assert enc.decode(data) == value
    assert enc.decode(memoryview(data)) == value


@pytest.mark.parametrize("bad", [5, None, 1.5, ["a"]])
def test_str_rejects_non_str(bad: Any) -> None:
    with pytest.raises(FormatError, match="'str'"):
        get_encoding("str").encode(bad)


@given(st.integers(-(10**300), 10**300))
def test_str_int_round_trip(value: int) -> None:
    enc = get_encoding("str_int")
    data = enc.encode(value)
    assert data == str(value).encode()
    out = enc.decode(data)
    assert type(out) is int and out == value


@pytest.mark.parametrize("bad", [1.0, "1", True, np.int64(3), None, Decimal(1)])
def test_str_int_requires_a_python_int(bad: Any) -> None:
    with pytest.raises(FormatError, match="str_int"):
        get_encoding("str_int").encode(bad)


@given(st.floats())
def test_str_float_round_trip(value: float) -> None:
    enc = get_encoding("str_float")
    data = enc.encode(value)
    assert data == repr(value).encode()
    out = enc.decode(data)
    assert type(out) is float
    assert repr(out) == repr(value)


@pytest.mark.parametrize("bad", [1, "1.0", Decimal("1.5"), None, np.float32(1.5)])
def test_str_float_requires_a_float(bad: Any) -> None:
    with pytest.raises(FormatError, match="str_float"):
        get_encoding("str_float").encode(bad)


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_str_decimal_round_trip(value: Decimal) -> None:
    enc = get_encoding("str_decimal")
    data = enc.encode(value)
    assert data == str(value).encode()
    out = enc.decode(data)
    assert type(out) is Decimal
    assert str(out) == str(value)
    assert out.as_tuple() == value.as_tuple()


@pytest.mark.parametrize("bad", [1.5, 1, "1.5", None])
def test_str_decimal_requires_a_decimal(bad: Any) -> None:
    with pytest.raises(FormatError, match="str_decimal"):
        get_encoding("str_decimal").encode(bad)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_json_round_trip_and_exact_bytes(value: Any) -> None:
    enc = get_encoding("json")
    data = enc.encode(value)
    # Default json.dumps: ensure_ascii (pure ASCII output) and ", " / ": " separators.
    assert data == json.dumps(value, ensure_ascii=True, separators=(", ", ": ")).encode("ascii")
    assert enc.decode(data) == value
    assert enc.decode(memoryview(data)) == value


def test_json_exact_layout_and_ndarray_tolist() -> None:
    enc = get_encoding("json")
    assert enc.encode({"k": [1, "é"]}) == b'{"k": [1, "\\u00e9"]}'
    assert enc.encode(np.array([[1, 2], [3, 4]], np.int32)) == b"[[1, 2], [3, 4]]"
    assert enc.encode(float("nan")) == b"NaN"


@pytest.mark.parametrize("bad", [{1, 2}, object(), {"a": np.zeros(2)}, np.int64(1)])
def test_json_rejects_unserialisable_values(bad: Any) -> None:
    with pytest.raises(FormatError, match="'json'"):
        get_encoding("json").encode(bad)


PICKLABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(), children, max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=20,
)


@given(PICKLABLE.filter(lambda v: not isinstance(v, bytes)))
def test_pkl_round_trip(value: Any) -> None:
    enc = get_encoding("pkl")
    data = enc.encode(value)
    assert data == pickle.dumps(value, protocol=4)
    assert enc.decode(data) == value
    assert enc.decode(memoryview(data)) == value


def test_pkl_top_level_bytes_are_stored_raw_and_do_not_decode() -> None:
    """mosaic quirk: a bytes value in a pkl column is not pickled; reading it back fails clearly."""
    enc = get_encoding("pkl")
    assert enc.encode(b"raw") == b"raw"
    with pytest.raises(FormatError, match="pkl"):
        enc.decode(b"raw")


def test_pkl_rejects_unpicklable_values() -> None:
    with pytest.raises(FormatError, match="pkl"):
        get_encoding("pkl").encode(lambda: None)


def test_decoders_of_bad_bytes_raise_value_errors() -> None:
    with pytest.raises(ValueError):
        get_encoding("str").decode(b"\xff\xfe")
    with pytest.raises(ValueError):
        get_encoding("json").decode(b"{not json")
    with pytest.raises(ValueError):
        get_encoding("str_int").decode(b"1.5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_encoding("uint64").decode(b"\xff" * 8) == 2**64 - 1
