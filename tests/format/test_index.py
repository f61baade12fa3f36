"""index.json v2: strict parsing (mosaic's key sets), safe basenames, byte-exact serialisation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from astreaming.errors import FormatError
from astreaming.format.index import (
    FileInfo,
    JSONEntry,
    MDSEntry,
    XSVEntry,
    dump_index,
    dump_merged_index,
    load_index,
    parse_index,
    write_text_atomic,
)
from astreaming.format.paths import check_basename, join_basename

from .golden import data_dir, datasets

MDS_SHARD: dict[str, Any] = {
    "column_encodings": ["int", "str"],
    "column_names": ["a", "b"],
    "column_sizes": [8, None],
    "compression": "zstd",
    "format": "mds",
    "hashes": ["sha1"],
    "raw_data": {"basename": "shard.00000.mds", "bytes": 100, "hashes": {"sha1": "ab"}},
    "samples": 3,
    "size_limit": 1024,
    "version": 2,
    "zip_data": {"basename": "shard.00000.mds.zstd", "bytes": 80, "hashes": {"sha1": "cd"}},
}


def _index(*shards: dict[str, Any]) -> str:
    return json.dumps({"shards": list(shards), "version": 2})


def _golden_shard(name: str) -> dict[str, Any]:
    shard: dict[str, Any] = json.loads((data_dir(name) / "index.json").read_text())["shards"][0]
    return shard


@pytest.mark.parametrize("name", datasets())
def test_golden_indexes_round_trip_byte_for_byte(name: str) -> None:
    text = (data_dir(name) / "index.json").read_text()
    entries = load_index(data_dir(name) / "index.json")
    if name == "mds/merged":
        assert dump_merged_index([e.to_dict() for e in entries]) == text
    else:
        assert dump_index(entries) == text


def test_entry_types_and_fetch_files() -> None:
    entries = load_index(data_dir("json/json_crlf_zstd") / "index.json")
    entry = entries[0]
    assert isinstance(entry, JSONEntry)
    assert entry.newline == "\r\n" and entry.columns == {"id": "int", "name": "str", "score": "float"}
    assert [f.basename for f in entry.fetch_files()] == [
        "shard.00000.json.zstd",
        "shard.00000.json.meta.zstd",
    ]
    assert entry.file_pairs()[1][0].basename == "shard.00000.json.meta"
    mds = parse_index(_index(MDS_SHARD), source="x")[0]
    assert isinstance(mds, MDSEntry)
    assert mds.fetch_files() == (FileInfo("shard.00000.mds.zstd", 80, {"sha1": "cd"}),)
    assert mds.column_sizes == (8, None)
    csv = load_index(data_dir("csv/csv_basic") / "index.json")[0]
    assert isinstance(csv, XSVEntry) and csv.separator == "," and "separator" not in csv.to_dict()
    xsv = load_index(data_dir("xsv/xsv_pipe") / "index.json")[0]
    assert isinstance(xsv, XSVEntry) and xsv.to_dict()["separator"] == "|"


@pytest.mark.parametrize(
    "name", ["mds/comp_none", "json/json_basic", "csv/csv_basic", "tsv/tsv_basic", "xsv/xsv_pipe"]
)
def test_unknown_key_is_rejected_naming_file_and_key(name: str) -> None:
    shard = _golden_shard(name)
    shard["astreaming_version"] = 1
    with pytest.raises(FormatError, match=r"idx\.json: shard 0: unknown key 'astreaming_version'"):
        parse_index(_index(shard), source="idx.json")


@pytest.mark.parametrize(
    "name", ["mds/comp_none", "json/json_basic", "csv/csv_basic", "tsv/tsv_basic", "xsv/xsv_pipe"]
)
def test_every_missing_key_is_rejected(name: str) -> None:
    shard = _golden_shard(name)
    for key in shard:
        broken = {k: v for k, v in shard.items() if k != key}
        with pytest.raises(FormatError, match=f"idx.json: shard 0: (missing key '{key}'|key 'format')"):
            parse_index(_index(broken), source="idx.json")


def test_csv_entry_with_separator_is_rejected() -> None:
    # The upstream README shows this; a mosaic CSVReader rejects it, and so do we.
    shard = _golden_shard("csv/csv_basic")
    shard["separator"] = ","
    with pytest.raises(FormatError, match="unknown key 'separator'"):
        parse_index(_index(shard), source="idx.json")


@pytest.mark.parametrize("version", [1, 3, "2", True, None])
def test_wrong_version_top_level_and_per_shard(version: Any) -> None:
    with pytest.raises(FormatError, match=r"idx\.json: key 'version' must be 2"):
        parse_index(json.dumps({"shards": [MDS_SHARD], "version": version}), source="idx.json")
    shard = dict(MDS_SHARD, version=version)
    with pytest.raises(FormatError, match=r"idx\.json: shard 0: key 'version' must be 2"):
        parse_index(_index(shard), source="idx.json")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"shards": []}', "missing key 'version'"),
        ('{"shards": [], "version": 2, "x": 1}', "unknown key 'x'"),
        ('{"shards": {}, "version": 2}', "'shards' must be a list"),
        ('{"shards": [1], "version": 2}', "shard 0: expected an object"),
        ('{"shards": [{"format": "parquet"}], "version": 2}', "key 'format' must be one of"),
    ],
)
def test_malformed_documents(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        parse_index(text, source="idx.json")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("samples", -1, "'samples' must be a non-negative 64-bit integer"),
        ("samples", True, "'samples' must be a non-negative 64-bit integer"),
        ("samples", 1.5, "'samples'"),
        ("size_limit", "1kb", "'size_limit'"),
        ("hashes", "sha1", "'hashes' must be a list of strings"),
        ("column_sizes", [8], "differ in length"),
        ("column_sizes", [8, -1], "'column_sizes'"),
        ("column_names", ["a", "a"], "duplicate column name"),
        ("compression", None, "'zip_data' must be given exactly when 'compression' is set"),
        ("raw_data", {"basename": "x", "bytes": 1}, "raw_data: missing key 'hashes'"),
        (
            "raw_data",
            {"basename": "x", "bytes": "1", "hashes": {}},
            "'bytes' must be a non-negative 64-bit integer",
        ),
        ("raw_data", {"basename": "x", "bytes": 1, "hashes": {"sha1": 5}}, "'hashes' must be an object"),
    ],
)
def test_wrong_types_name_the_key(key: str, value: Any, match: str) -> None:
    shard = copy.deepcopy(MDS_SHARD)
    shard[key] = value
    with pytest.raises(FormatError, match=match):
        parse_index(_index(shard), source="idx.json")


@pytest.mark.parametrize(
    "basename",
    ["../escape.mds", "a/../../b", "/etc/passwd", "a\\..\\b", "", "a//b", "a/", "./a", "a\x00b", "C:x", 5],
)
def test_unsafe_basenames_are_refused(basename: Any, tmp_path: Path) -> None:
    shard = copy.deepcopy(MDS_SHARD)
    shard["raw_data"]["basename"] = basename
    with pytest.raises(FormatError, match=r"idx\.json: shard 0: raw_data.*basename"):
        parse_index(_index(shard), source="idx.json")
    if isinstance(basename, str):
        with pytest.raises(FormatError):
            check_basename(basename, source="x")
        with pytest.raises(FormatError):
            join_basename(tmp_path, basename)


def test_nested_basenames_are_allowed(tmp_path: Path) -> None:
    assert check_basename("3/sub/shard.00000.mds", source="x") == "3/sub/shard.00000.mds"
    assert join_basename(tmp_path, "3/shard.00000.mds") == tmp_path / "3" / "shard.00000.mds"


def test_load_index_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="index file not found") as info:
        load_index(tmp_path / "index.json")
    assert str(tmp_path) in str(info.value)


def test_write_text_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
    assert target.stat().st_mode & 0o777 == 0o644
