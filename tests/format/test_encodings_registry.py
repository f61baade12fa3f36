"""The encoding registry: names, spec parsing, sizes, pass-through and the fixed-size length check."""

from __future__ import annotations

from typing import Any

import pytest

from astreaming.errors import FormatError
from astreaming.format.mds.encodings import encode_value, encoding_names, get_encoding, is_encoding

# mosaicml-streaming 0.13 get_mds_encodings(), from the reference table (§1.4).
MOSAIC_NAMES = {
    "bytes", "str", "int",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
    "str_int", "str_float", "str_decimal", "json", "pkl",
    "pil", "jpeg", "png", "list[pil]", "list[jpeg]", "list[png]",
    "jpeg_array", "jpegarray", "ndarray",
}  # fmt: skip

FIXED_SIZES = {
    "int": 8,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "ndarray:int16:2,3": 12,
    "ndarray:float64:1,1,2": 16,
    "ndarray:uint8:7": 7,
}


def test_encoding_names_are_mosaics() -> None:
    names = encoding_names()
    assert set(names) == MOSAIC_NAMES
    assert len(names) == len(MOSAIC_NAMES)


def test_every_name_builds_and_only_pkl_is_unsafe() -> None:
    unsafe = [name for name in encoding_names() if get_encoding(name).unsafe]
    assert unsafe == ["pkl"]
    for name in encoding_names():
        assert get_encoding(name).name == name
        assert is_encoding(name)


@pytest.mark.parametrize("spec", sorted(MOSAIC_NAMES | set(FIXED_SIZES)))
def test_sizes(spec: str) -> None:
    assert get_encoding(spec).size == FIXED_SIZES.get(spec)


def test_encodings_are_built_once_per_spec() -> None:
    assert get_encoding("ndarray:int32:3") is get_encoding("ndarray:int32:3")
    assert get_encoding("json") is get_encoding("json")


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [("ndarray", "ndarray"), ("ndarray:uint8", "ndarray:uint8"), ("ndarray:int16:2,3", "ndarray:int16:2,3")],
)
def test_ndarray_spec_forms(spec: str, canonical: str) -> None:
    assert get_encoding(spec).name == canonical


@pytest.mark.parametrize(
    "spec",
    [
        "foo",
        "",
        "Int",
        "str:x",
        "int:8",
        "list[int]",
        "list[ndarray]",
        "ndarray:",
        "ndarray:bool",
        "ndarray:complex64",
        "ndarray:object",
        "ndarray:int8:0",
        "ndarray:int8:-2",
        "ndarray:int8:2,0",
        "ndarray:int8:a",
        "ndarray:int8:",
        "ndarray:int8:2:3",
        "ndarray::2,3",
        "ndarray:int8:" + ",".join(["1"] * 64),
    ],
)
def test_invalid_specs_name_the_spec(spec: str) -> None:
    with pytest.raises(FormatError) as info:
        get_encoding(spec)
    assert repr(spec) in str(info.value)
    assert is_encoding(spec) is False


@pytest.mark.parametrize("spec", [None, 5, b"int", ["int"]])
def test_non_string_specs(spec: Any) -> None:
    assert is_encoding(spec) is False
    with pytest.raises(FormatError):
        get_encoding(spec)


def test_unknown_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown MDS encoding 'foo'"):
        get_encoding("foo")


@pytest.mark.parametrize("spec", sorted(MOSAIC_NAMES))
def test_bytes_pass_through_every_encoding(spec: str) -> None:
    enc = get_encoding(spec)
    raw = b"\x00\x01\x02\x03\x04\x05\x06\x07"
    assert enc.encode(raw) is raw
    if enc.size is None or enc.size == len(raw):
        assert encode_value(spec, raw, column="c") == raw


@pytest.mark.parametrize(
    ("spec", "raw"), [("int", b"\x01" * 7), ("uint16", b"\x01"), ("ndarray:int16:2,3", b"")]
)
def test_wrong_size_for_fixed_column_names_the_column(spec: str, raw: bytes) -> None:
    with pytest.raises(FormatError, match="column 'my_col'"):
        encode_value(spec, raw, column="my_col")


def test_encode_value_accepts_an_encoding_object_and_names_the_column_on_bad_values() -> None:
    enc = get_encoding("int")
    assert encode_value(enc, 5, column="n") == (5).to_bytes(8, "little")
    with pytest.raises(FormatError, match=r"column 'n'.*'int'"):
        encode_value(enc, "five", column="n")
    with pytest.raises(FormatError, match="unknown MDS encoding"):
        encode_value("nope", 1, column="n")
