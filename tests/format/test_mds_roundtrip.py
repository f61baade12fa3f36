"""Hypothesis round trips: random MDS column sets written with MDSWriter read back identically."""

from __future__ import annotations

import decimal
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from astreaming.format.local import LocalDataset
from astreaming.format.mds.writer import MDSWriter

INT_RANGES = {
    f"{k}{b}": (np.iinfo(f"{k}{b}").min, np.iinfo(f"{k}{b}").max)
    for k in ("int", "uint")
    for b in (8, 16, 32, 64)
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
DTYPES = [
    "uint8",
    "int8",
    "uint16",
    "int16",
    "float16",
    "uint32",
    "int32",
    "float32",
    "uint64",
    "int64",
    "float64",
]


def _array(dtype: str, shape: Any = shapes) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(
        np.dtype(dtype), shape, elements={"allow_nan": False} if dtype.startswith("f") else None
    )


ENCODINGS: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "str": st.text(max_size=20),
    "bytes": st.binary(max_size=40),
    "str_int": st.integers(-(10**30), 10**30),
    "str_float": st.floats(allow_nan=False),
    "str_decimal": st.decimals(allow_nan=False, allow_infinity=False, places=3),
    "json": json_values,
    "ndarray": st.sampled_from(DTYPES).flatmap(_array),
    "ndarray:int32": _array("int32"),
    "ndarray:float32:2,3": _array("float32", (2, 3)),
    "float16": st.floats(width=16, allow_nan=False),
    "float32": st.floats(width=32, allow_nan=False),
    "float64": st.floats(allow_nan=False),
    **{name: st.integers(lo, hi) for name, (lo, hi) in INT_RANGES.items()},
}


@st.composite
def datasets(draw: st.DrawFn) -> tuple[dict[str, str], list[dict[str, Any]], int | None]:
    names = draw(st.lists(st.text("abcdefgh_", min_size=1, max_size=6), min_size=1, max_size=6, unique=True))
    columns = {name: draw(st.sampled_from(sorted(ENCODINGS))) for name in names}
    samples = draw(
        st.lists(
            st.fixed_dictionaries({n: ENCODINGS[e] for n, e in columns.items()}), min_size=0, max_size=12
        )
    )
    limit = draw(st.none() | st.integers(200, 2000))
    return columns, samples, limit


def _same(spec: str, got: Any, want: Any) -> None:
    if spec.startswith("ndarray"):
        assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == np.ascontiguousarray(want).tobytes() and not got.flags.writeable
    elif spec in INT_RANGES or spec.startswith("float"):
        assert type(got) is np.dtype(spec).type
        assert got.tobytes() == np.dtype(spec).type(want).tobytes()
    elif spec == "str_decimal":
        assert type(got) is decimal.Decimal and str(got) == str(want)
    elif spec == "json":
        assert got == want
    else:
        assert type(got) is type(want) and got == want, (spec, got, want)


@settings(max_examples=60, deadline=None)
@given(case=datasets())
def test_mds_round_trip(case: tuple[dict[str, str], list[dict[str, Any]], int | None]) -> None:
    columns, samples, limit = case
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        with MDSWriter(out=str(out), columns=columns, size_limit=limit) as writer:
            for sample in samples:
                writer.write(sample)
        ds = LocalDataset(out)
        assert len(ds) == len(samples)
        for i, want in enumerate(samples):
            got = ds[i]
            assert sorted(got) == sorted(columns)
            for name, spec in columns.items():
                _same(spec, got[name], want[name])
        ds.close()
