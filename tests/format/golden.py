"""Golden datasets written by mosaicml-streaming 0.13.0, and the tagged-value format of their expected.json.

``untag`` rebuilds writer inputs; ``assert_tagged`` checks a decoded value against a tagged expected value,
types included (python int vs numpy scalar, read-only ndarray, PIL image class, ...).
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "format"


def datasets(kind: str | None = None) -> list[str]:
    """``kind/name`` of every golden dataset (optionally of one kind: mds, json, csv, tsv, xsv)."""
    return sorted(
        f"{p.parent.parent.name}/{p.parent.name}"
        for p in GOLDEN.glob("*/*/expected.json")
        if kind is None or p.parent.parent.name == kind
    )


def expected(name: str) -> dict[str, Any]:
    """The expected.json of dataset ``kind/name``."""
    result: dict[str, Any] = json.loads((GOLDEN / name / "expected.json").read_text())
    return result


def data_dir(name: str) -> Path:
    """The directory holding the dataset as mosaic left it."""
    return GOLDEN / name / "data"


def payload(obj: dict[str, Any]) -> bytes:
    """The bytes of a ``{"b64"}`` / ``{"zb64"}`` object."""
    if "zb64" in obj:
        return zlib.decompress(base64.b64decode(obj["zb64"]))
    return base64.b64decode(obj["b64"])


def untag(obj: dict[str, Any], tmp: Path | None = None) -> Any:
    """Rebuild a writer input value. ``tmp`` is needed for ``jpeg_file`` (written to a real file)."""
    t = obj["t"]
    if t == "none":
        return None
    if t in ("bool", "int", "str"):
        return obj["v"]
    if t == "float":
        return float(obj["repr"])
    if t == "bytes":
        return payload(obj)
    if t == "decimal":
        return decimal.Decimal(obj["s"])
    if t == "npscalar":
        dtype = np.dtype(obj["dtype"])
        if "hex" in obj:
            return np.frombuffer(bytes.fromhex(obj["hex"]), dtype.newbyteorder("<"))[0].astype(dtype)
        return dtype.type(obj["v"])
    if t == "ndarray":
        arr = np.frombuffer(payload(obj), np.dtype(obj["dtype"]).newbyteorder("<")).reshape(obj["shape"])
        arr = arr.astype(np.dtype(obj["dtype"]))
        return np.asfortranarray(arr) if obj.get("layout") == "F" else arr.copy()
    if t == "list":
        return [untag(x, tmp) for x in obj["items"]]
    if t == "tuple":
        return tuple(untag(x, tmp) for x in obj["items"])
    if t == "dict":
        return {k: untag(v, tmp) for k, v in obj["v"].items()}
    if t == "json":
        return obj["v"]
    if t == "pil":
        img = Image.frombytes(obj["mode"], tuple(obj["size"]), base64.b64decode(obj["tobytes_b64"]))
        if "palette_b64" in obj:
            img.putpalette(base64.b64decode(obj["palette_b64"]))
        return img
    if t == "jpeg_file":
        assert tmp is not None, "jpeg_file inputs need a temporary directory"
        data = payload(obj)
        path = tmp / f"input_{hashlib.sha256(data).hexdigest()[:16]}.jpg"
        path.write_bytes(data)
        img = Image.open(path)
        img.load()  # reads the pixels and closes the file (no ResourceWarning); .filename stays set
        return img
    raise AssertionError(f"unknown tag {t!r}")


def assert_tagged(actual: Any, obj: dict[str, Any], where: str = "value") -> None:
    """Assert that ``actual`` equals the tagged expected value, including its exact type."""
    t = obj["t"]
    if t == "none":
        assert actual is None, where
    elif t in ("bool", "int", "str"):
        assert type(actual) is {"bool": bool, "int": int, "str": str}[t], (where, type(actual))
        assert actual == obj["v"], (where, actual, obj["v"])
    elif t == "float":
        assert type(actual) is float, (where, type(actual))
        assert repr(actual) == obj["repr"], (where, actual, obj["repr"])
    elif t == "bytes":
        assert type(actual) is bytes, (where, type(actual))
        assert actual == payload(obj), where
    elif t == "decimal":
        assert type(actual) is decimal.Decimal, (where, type(actual))
        assert str(actual) == obj["s"], (where, actual)
    elif t == "npscalar":
        assert type(actual) is np.dtype(obj["dtype"]).type, (where, type(actual), obj["dtype"])
        if "hex" in obj:
            assert actual.astype(actual.dtype.newbyteorder("<")).tobytes().hex() == obj["hex"], (
                where,
                actual,
            )
        else:
            assert int(actual) == obj["v"], (where, actual, obj["v"])
    elif t == "ndarray":
        assert type(actual) is np.ndarray, (where, type(actual))
        assert actual.dtype == np.dtype(obj["dtype"]), (where, actual.dtype)
        assert list(actual.shape) == obj["shape"], (where, actual.shape)
        assert np.ascontiguousarray(actual).astype(actual.dtype.newbyteorder("<")).tobytes() == payload(
            obj
        ), where
        if obj.get("readonly"):
            assert not actual.flags.writeable, f"{where}: decoded ndarray must be read-only"
    elif t in ("list", "tuple"):
        assert type(actual) is {"list": list, "tuple": tuple}[t], (where, type(actual))
        assert len(actual) == len(obj["items"]), (where, len(actual))
        for i, (a, e) in enumerate(zip(actual, obj["items"], strict=True)):
            assert_tagged(a, e, f"{where}[{i}]")
    elif t == "dict":
        assert type(actual) is dict, (where, type(actual))
        assert list(actual) == list(obj["v"]), (where, list(actual), list(obj["v"]))
        for k, e in obj["v"].items():
            assert_tagged(actual[k], e, f"{where}[{k!r}]")
    elif t == "json":
        # json.dumps compares key order and int/float/bool distinctions too.
        assert json.dumps(actual) == json.dumps(obj["v"]), (where, actual, obj["v"])
    elif t == "pil":
        assert isinstance(actual, Image.Image), (where, type(actual))
        if "class" in obj:
            assert type(actual).__name__ == obj["class"], (where, type(actual).__name__)
            assert actual.format == obj["format"], (where, actual.format)
        assert actual.mode == obj["mode"] and list(actual.size) == obj["size"], (
            where,
            actual.mode,
            actual.size,
        )
        raw = actual.tobytes()
        assert hashlib.sha256(raw).hexdigest() == obj.get(
            "sha256_of_tobytes", hashlib.sha256(raw).hexdigest()
        )
        if "tobytes_b64" in obj:
            assert raw == base64.b64decode(obj["tobytes_b64"]), f"{where}: pixels differ"
    else:
        raise AssertionError(f"{where}: unknown tag {t!r}")


def assert_sample(actual: dict[str, Any], tagged: dict[str, Any], where: str) -> None:
    """A decoded sample dict against its tagged expected columns (key order not significant)."""
    assert type(actual) is dict, where
    assert sorted(actual) == sorted(tagged), (where, sorted(actual), sorted(tagged))
    for key, obj in tagged.items():
        assert_tagged(actual[key], obj, f"{where}[{key!r}]")
