"""CSV/TSV/XSV writers and readers: round trips, header and absolute offsets, separators, bad input."""

from __future__ import annotations

import dataclasses
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import XSVEntry, load_index
from astreaming.format.local import LocalDataset
from astreaming.format.reader import open_shard
from astreaming.format.xsv import CSVWriter, TSVWriter, XSVWriter

SEPARATORS = {"csv": ",", "tsv": "\t"}


def _text(forbidden: str) -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_characters=forbidden, blacklist_categories=["Cs"]), max_size=10)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, str, dict[str, str], list[dict[str, Any]], int | None]:
    kind = draw(st.sampled_from(["csv", "tsv", "xsv"]))
    sep = SEPARATORS.get(kind) or draw(st.sampled_from(["|", ";", "::"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    forbidden = sep + newline + "\r\n"
    names = draw(st.lists(_text(forbidden).filter(bool), min_size=1, max_size=4, unique=True))
    types = {
        "str": _text(forbidden),
        "int": st.integers(-(10**12), 10**12),
        "float": st.floats(),
    }
    columns = {n: draw(st.sampled_from(sorted(types))) for n in names}
    samples = draw(st.lists(st.fixed_dictionaries({n: types[t] for n, t in columns.items()}), max_size=10))
    return kind, sep, newline, columns, samples, draw(st.none() | st.integers(1, 200))


def _make(kind: str, out: Path, columns: dict[str, str], sep: str, **kw: Any) -> Any:
    if kind == "csv":
        return CSVWriter(out=str(out), columns=columns, **kw)
    if kind == "tsv":
        return TSVWriter(out=str(out), columns=columns, **kw)
    return XSVWriter(out=str(out), columns=columns, separator=sep, **kw)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return type(a) is type(b) and a == b


@settings(max_examples=50, deadline=None)
@given(case=cases())
def test_xsv_round_trip(case: tuple[str, str, str, dict[str, str], list[dict[str, Any]], int | None]) -> None:
    kind, sep, newline, columns, samples, limit = case
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        with _make(kind, out, columns, sep, newline=newline, size_limit=limit) as w:
            for s in samples:
                w.write(s)
        entries = load_index(out / "index.json")
        assert all(isinstance(e, XSVEntry) and e.format == kind and e.separator == sep for e in entries)
        ds = LocalDataset(out)
        assert len(ds) == len(samples)
        for i, want in enumerate(samples):
            got = ds[i]
            assert list(got) == sorted(columns)
            assert all(_eq(got[k], want[k]) for k in columns), (got, want)


def test_header_and_absolute_offsets(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with TSVWriter(out=str(out), columns={"w": "str", "i": "int"}) as w:
        w.write({"w": "a b", "i": 3})
        w.write({"w": "", "i": -1})
    data = (out / "shard.00000.tsv").read_bytes()
    assert data == b"i\tw\n3\ta b\n-1\t\n"
    meta = (out / "shard.00000.tsv.meta").read_bytes()
    assert struct.unpack_from("<4I", meta) == (2, 4, 10, 14)
    (entry,) = load_index(out / "index.json")
    assert "separator" not in entry.to_dict()
    assert open_shard(out, entry)[1] == {"i": -1, "w": ""}


def test_writer_refuses_separator_and_newline_in_values(tmp_path: Path) -> None:
    w = CSVWriter(out=str(tmp_path / "o"), columns={"s": "str"})
    with pytest.raises(FormatError, match="separator or the newline"):
        w.write({"s": "a,b"})
    with pytest.raises(FormatError, match="separator or the newline"):
        w.write({"s": "a\nb"})
    with pytest.raises(FormatError, match="expected str"):
        w.write({"s": 5})
    with pytest.raises(ConfigError, match="column name"):
        CSVWriter(out=str(tmp_path / "p"), columns={"a,b": "str"})
    with pytest.raises(ConfigError, match="separator"):
        XSVWriter(out=str(tmp_path / "q"), columns={"a": "str"}, separator="")
    with pytest.raises(ConfigError, match="unknown argument 'separator'"):
        CSVWriter(out=str(tmp_path / "r"), columns={"a": "str"}, separator=";")
    with pytest.raises(ConfigError, match="'a'"):
        TSVWriter(out=str(tmp_path / "s"), columns={"a": "json"})


def test_reader_rejects_malformed_lines(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with CSVWriter(out=str(out), columns={"a": "int", "b": "str"}) as w:
        w.write({"a": 1, "b": "xy"})
        w.write({"a": 2, "b": "zz"})
    (entry,) = load_index(out / "index.json")
    assert isinstance(entry, XSVEntry)
    path = out / "shard.00000.csv"
    good = path.read_bytes()
    path.write_bytes(good.replace(b"1,xy", b"1;xy"))
    with pytest.raises(FormatError, match=r"shard\.00000\.csv: sample 0 has 1 fields, expected 2"):
        open_shard(out, entry)[0]
    path.write_bytes(good.replace(b"1,xy", b"q,xy"))
    with pytest.raises(FormatError, match=r"shard\.00000\.csv: sample 0"):
        open_shard(out, entry)[0]
    path.write_bytes(good.replace(b"a,b", b"a;b"))
    with pytest.raises(FormatError, match="header line does not match"):
        open_shard(out, entry)
    path.write_bytes(good)
    with pytest.raises(FormatError, match="unknown encoding"):
        open_shard(out, dataclasses.replace(entry, column_encodings=("int", "bytes")))
