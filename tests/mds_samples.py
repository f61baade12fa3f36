"""Samples covering every MDS encoding that columnar decoding treats specially, for format and loader tests.

Variable-size columns sit before and between fixed ones (the writer stores columns in sorted name order):
a fixed column's position then depends on the lengths stored before it. ``wide`` (160 B) is copied row by
row, the narrower fixed columns are gathered at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALARS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32"]

COLUMNS: dict[str, str] = {
    "id": "int",
    "big": "int",
    "text": "str",
    "blob": "bytes",
    **{f"s_{name}": name for name in SCALARS},
    "f64": "float64",
    "img": "ndarray:uint8:2,3",
    "vec": "ndarray:float32:4",
    "u64s": "ndarray:uint64:2",
    "half": "ndarray:float16:3",
    "wide": "ndarray:float64:20",
    "dyn": "ndarray",
    "dyn16": "ndarray:int16",
    "num": "str_int",
    "meta": "json",
    "last": "int16",
}

#: The stacked columns (one array per batch).
STACKED = {"id", "big", "f64", "img", "vec", "u64s", "half", "wide", "last", *(f"s_{n}" for n in SCALARS)}


def sample(i: int) -> dict[str, Any]:
    """Sample ``i``: ``id`` is ``i``; empty, non-ASCII, extreme and negative values among the others."""
    rng = np.random.default_rng(i)
    out: dict[str, Any] = {
        "id": i,
        "big": (-1) ** i * (i << 40),
        "text": "é" * (i % 4) + f"t{i}" * (i % 3),  # empty for i % 12 == 0
        "blob": bytes(rng.integers(0, 256, i % 9, dtype=np.uint8)),
        "f64": float(rng.standard_normal()),
        "img": rng.integers(0, 256, (2, 3), dtype=np.uint8),
        "vec": rng.standard_normal(4).astype(np.float32),
        "u64s": np.array([2**64 - 1 - i, i], np.uint64),
        "half": rng.standard_normal(3).astype(np.float16),
        "wide": rng.standard_normal(20),
        "dyn": rng.integers(-5, 5, (1 + i % 3, 2), dtype=np.int32),
        "dyn16": np.arange(i % 5 + 1, dtype=np.int16),
        "num": i * 1_000_003,
        "meta": {"i": i, "even": i % 2 == 0},
        "last": -i,
    }
    for name in SCALARS:
        info = np.iinfo(name) if name[0] in "iu" else None
        value = (info.max - i if i % 2 else info.min + i) if info is not None else rng.standard_normal()
        out[f"s_{name}"] = np.dtype(name).type(value)
    return out


def assert_same_sample(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Same keys in the same order, and per value the same type, dtype, shape, value, writability."""
    assert list(got) == list(want)
    for key, value in want.items():
        other = got[key]
        assert type(other) is type(value), key
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, key
            assert other.tobytes() == value.tobytes(), key
            assert other.flags.writeable == value.flags.writeable, key
        elif isinstance(value, np.generic):
            assert other.dtype == value.dtype and other.tobytes() == value.tobytes(), key
        else:
            assert other == value, key
