"""Per-column checks of every MDS encoding against the bytes and values mosaicml-streaming 0.13 produced.

Each golden sample record is cut into its column parts using the golden index (column sizes and the
per-sample length header); then every writer input must encode to exactly its part, and every part must
decode to exactly what mosaic returned (type, value, bits).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, features

from astreaming.format.mds.encodings import encode_value, get_encoding

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "format" / "mds"
DATASETS = ("scalars", "ndarrays", "images")


def _unb64(obj: dict[str, Any]) -> bytes:
    if "zb64" in obj:
        return zlib.decompress(base64.b64decode(obj["zb64"]))
    return base64.b64decode(obj["b64"])


def _input_value(tag: dict[str, Any], tmp: Path) -> Any:
    """Builds the Python value that was passed to mosaic's writer from its tagged form."""
    t = tag["t"]
    if t == "none":
        return None
    if t in ("bool", "int", "str"):
        return tag["v"]
    if t == "float":
        return float(tag["repr"])
    if t == "bytes":
        return _unb64(tag)
    if t == "decimal":
        return Decimal(tag["s"])
    if t == "json":
        return tag["v"]
    if t == "list":
        return [_input_value(item, tmp) for item in tag["items"]]
    if t == "tuple":
        return tuple(_input_value(item, tmp) for item in tag["items"])
    if t == "dict":
        return {k: _input_value(v, tmp) for k, v in tag["v"].items()}
    if t == "npscalar":
        dtype = np.dtype(tag["dtype"])
        if dtype.kind == "f":
            return np.frombuffer(bytes.fromhex(tag["hex"]), dtype.newbyteorder("<"))[0]
        return dtype.type(tag["v"])
    if t == "ndarray":
        arr = np.frombuffer(_unb64(tag), np.dtype(tag["dtype"]).newbyteorder("<")).reshape(tag["shape"])
        return np.asfortranarray(arr) if tag.get("layout") == "F" else arr.copy()
    if t == "pil":
        image = Image.frombytes(tag["mode"], tuple(tag["size"]), base64.b64decode(tag["tobytes_b64"]))
        if "palette_b64" in tag:
            image.putpalette(base64.b64decode(tag["palette_b64"]))
        return image
    if t == "jpeg_file":
        path = tmp / f"input{len(list(tmp.iterdir()))}.jpg"
        path.write_bytes(_unb64(tag))
        image = Image.open(path)
        image.load()  # reads the pixels and closes the file; the image keeps its filename
        return image
    raise AssertionError(f"unknown tag {t}")


def _check_decoded(value: Any, tag: dict[str, Any]) -> None:
    """Asserts that a decoded value is exactly what mosaic returned (type included)."""
    t = tag["t"]
    if t == "none":
        assert value is None
    elif t in ("bool", "int", "str"):
        assert type(value) is {"bool": bool, "int": int, "str": str}[t]
        assert value == tag["v"]
    elif t == "float":
        assert type(value) is float
        assert repr(value) == tag["repr"]
    elif t == "bytes":
        assert type(value) is bytes
        assert value == _unb64(tag)
    elif t == "decimal":
        assert type(value) is Decimal
        assert str(value) == tag["s"]
    elif t == "json":
        assert json.dumps(value) == json.dumps(tag["v"])
    elif t in ("list", "tuple"):
        assert type(value) is (list if t == "list" else tuple)
        assert len(value) == len(tag["items"])
        for item, item_tag in zip(value, tag["items"], strict=True):
            _check_decoded(item, item_tag)
    elif t == "dict":
        assert type(value) is dict
        assert list(value) == list(tag["v"])
        for key, item_tag in tag["v"].items():
            _check_decoded(value[key], item_tag)
    elif t == "npscalar":
        assert type(value) is np.dtype(tag["dtype"]).type
        if "hex" in tag:
            assert value.tobytes().hex() == tag["hex"]
        else:
            assert int(value) == tag["v"]
    elif t == "ndarray":
        assert isinstance(value, np.ndarray)
        assert value.dtype == np.dtype(tag["dtype"])
        assert list(value.shape) == tag["shape"]
        assert value.tobytes() == _unb64(tag)
        assert value.flags.writeable is not bool(tag.get("readonly"))
    elif t == "pil":
        assert type(value).__name__ == tag["class"]
        assert value.format == tag["format"]
        assert value.mode == tag["mode"]
        assert list(value.size) == tag["size"]
        assert hashlib.sha256(value.tobytes()).hexdigest() == tag["sha256_of_tobytes"]
        if "palette_b64" in tag:
            palette = value.palette.tobytes() if value.palette is not None else b""
            assert palette == base64.b64decode(tag["palette_b64"])
    else:
        raise AssertionError(f"unknown tag {t}")


def _load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    expected = json.loads((GOLDEN / name / "expected.json").read_text())
    index = json.loads((GOLDEN / name / "data" / "index.json").read_text())
    return expected, index["shards"][0]


def _split(record: bytes, sizes: list[int | None]) -> list[bytes]:
    """Cuts one MDS sample record into its column parts (variable lengths come first, as uint32)."""
    num_var = sum(size is None for size in sizes)
    var_sizes = iter(struct.unpack_from(f"<{num_var}I", record))
    pos = 4 * num_var
    parts = []
    for size in sizes:
        length = size if size is not None else next(var_sizes)
        parts.append(record[pos : pos + length])
        pos += length
    assert pos == len(record)
    return parts


def _cases() -> list[tuple[str, int, str]]:
    cases = []
    for name in DATASETS:
        expected, entry = _load(name)
        for i in range(len(expected["inputs"])):
            for column in entry["column_names"]:
                cases.append((name, i, column))
    return cases


# Re-encoding an in-memory image with Pillow is only byte-identical with the libraries the golden files
# were made with; elsewhere the pixels are compared instead (PNG is lossless, JPEG is checked by decode).
_SAME_IMAGE_LIBS = features.version("jpg") == "3.2.0" and features.version("zlib") == "1.2.13"


@pytest.mark.parametrize(("dataset", "index", "column"), _cases())
def test_golden_column_bytes_and_values(dataset: str, index: int, column: str, tmp_path: Path) -> None:
    expected, entry = _load(dataset)
    col = entry["column_names"].index(column)
    spec = entry["column_encodings"][col]
    enc = get_encoding(spec)
    assert enc.size == entry["column_sizes"][col]

    part = _split(_unb64(expected["sample_bytes"][index]), entry["column_sizes"])[col]
    in_tag = expected["inputs"][index][column]
    value = _input_value(in_tag, tmp_path)
    encoded = encode_value(spec, value, column=column)
    reencoded_image = spec in ("png", "list[png]") or (spec == "jpeg" and in_tag["t"] == "pil")
    if reencoded_image and not _SAME_IMAGE_LIBS:
        for got, want in zip(
            _as_list(enc.decode(encoded)), _as_list(enc.decode(part)), strict=True
        ):  # pragma: no cover - only with other image libraries
            assert got.size == want.size and got.mode == want.mode
    else:
        assert encoded == part

    decoded = enc.decode(part)
    _check_decoded(decoded, expected["decoded"][index][column])
    # The reader may hand out memoryview slices of a mapped shard: same result.
    _check_decoded(enc.decode(memoryview(part)), expected["decoded"][index][column])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_golden_covers_every_encoding() -> None:
    """The three golden datasets exercise every encoding name (ndarray in its three spec forms)."""
    specs = set()
    for name in DATASETS:
        specs.update(_load(name)[1]["column_encodings"])
    base_names = {spec.split(":")[0] for spec in specs}
    from astreaming.format.mds.encodings import encoding_names

    assert base_names == set(encoding_names())
    assert {"ndarray", "ndarray:int16", "ndarray:float32:2,3"} <= specs


def test_bytes_fed_to_typed_columns_are_stored_verbatim() -> None:
    """mosaic's pass-through: scalars samples 3..5 feed raw bytes to int/str/uint16 columns."""
    expected, entry = _load("scalars")
    cols = entry["column_names"]
    for index, column in ((3, "n"), (4, "s"), (5, "u16")):
        raw = _unb64(expected["inputs"][index][column])
        part = _split(_unb64(expected["sample_bytes"][index]), entry["column_sizes"])[cols.index(column)]
        assert part == raw
        assert encode_value(entry["column_encodings"][cols.index(column)], raw, column=column) == raw
