"""JSONL writer and reader: round trips, the meta file, bad input."""

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
from astreaming.format.index import JSONEntry, load_index
from astreaming.format.jsonl import JSONWriter
from astreaming.format.local import LocalDataset
from astreaming.format.reader import open_shard

TYPES = {"str": st.text(max_size=15), "int": st.integers(-(10**20), 10**20), "float": st.floats()}


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, str], list[dict[str, Any]], int | None, str, str | None]:
    names = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True))
    columns = {n: draw(st.sampled_from(sorted(TYPES))) for n in names}
    samples = draw(st.lists(st.fixed_dictionaries({n: TYPES[t] for n, t in columns.items()}), max_size=10))
    limit = draw(st.none() | st.integers(1, 400))
    newline = draw(st.sampled_from(["\n", "\r\n", "\x1e"]))
    compression = draw(st.sampled_from([None, "zstd", "br:3"]))
    return columns, samples, limit, newline, compression


def _eq(a: Any, b: Any) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return type(a) is type(b) and a == b


@settings(max_examples=50, deadline=None)
@given(case=cases())
def test_json_round_trip(
    case: tuple[dict[str, str], list[dict[str, Any]], int | None, str, str | None],
) -> None:
    columns, samples, limit, newline, compression = case
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        with JSONWriter(
            out=str(out), columns=columns, size_limit=limit, newline=newline, compression=compression
        ) as w:
            for s in samples:
                w.write(s)
        ds = LocalDataset(out)
        assert len(ds) == len(samples)
        for i, want in enumerate(samples):
            got = ds[i]
            assert list(got) == sorted(want)  # json.loads of a sort_keys line
            assert all(_eq(got[k], want[k]) for k in want), (got, want)
        ds.close()


def test_meta_offsets_are_relative_and_lines_exact(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with JSONWriter(out=str(out), columns={"b": "str", "a": "int"}) as w:
        w.write({"a": 1, "b": "x"})
        w.write({"a": 22, "b": "\u00e4"})
    data = (out / "shard.00000.json").read_bytes()
    assert data == b'{"a": 1, "b": "x"}\n{"a": 22, "b": "\\u00e4"}\n'
    meta = (out / "shard.00000.json.meta").read_bytes()
    assert struct.unpack_from("<4I", meta) == (2, 0, 19, len(data))
    (entry,) = load_index(out / "index.json")
    assert isinstance(entry, JSONEntry) and entry.columns == {"b": "str", "a": "int"}
    assert open_shard(out, entry).get_bytes(1) == b'{"a": 22, "b": "\\u00e4"}\n'


def test_type_checks_and_arguments(tmp_path: Path) -> None:
    w = JSONWriter(out=str(tmp_path / "o"), columns={"a": "int", "f": "float"})
    with pytest.raises(FormatError, match="column 'a': expected int, got str"):
        w.write({"a": "1", "f": 1.0})
    with pytest.raises(FormatError, match="column 'f': expected float, got int"):
        w.write({"a": 1, "f": 1})
    with pytest.raises(ConfigError, match=r"'a'.*'bytes'"):
        JSONWriter(out=str(tmp_path / "p"), columns={"a": "bytes"})
    with pytest.raises(ConfigError, match="newline"):
        JSONWriter(out=str(tmp_path / "q"), columns={"a": "int"}, newline="")


def test_bad_meta_and_data_name_the_file(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with JSONWriter(out=str(out), columns={"a": "int"}) as w:
        for i in range(3):
            w.write({"a": i})
    (entry,) = load_index(out / "index.json")
    assert isinstance(entry, JSONEntry)
    meta_path = out / "shard.00000.json.meta"
    meta = bytearray(meta_path.read_bytes())
    with pytest.raises(
        FormatError, match=r"shard\.00000\.json\.meta: meta file lists 3 samples but the index"
    ):
        open_shard(out, dataclasses.replace(entry, samples=4))
    struct.pack_into("<I", meta, 16, 999)
    meta_path.write_bytes(bytes(meta))
    with pytest.raises(FormatError, match=r"shard\.00000\.json\.meta: offsets point past the end"):
        open_shard(out, entry)
    meta_path.write_bytes(bytes(meta[:10]))
    with pytest.raises(FormatError, match="file has 10 bytes but the index says"):
        open_shard(out, entry)
    short = dataclasses.replace(entry, raw_meta=dataclasses.replace(entry.raw_meta, bytes=10))
    with pytest.raises(FormatError, match="truncated meta file"):
        open_shard(out, short)
    meta_path.unlink()
    with pytest.raises(FormatError, match="not found"):
        open_shard(out, entry)
