"""merge_index over local partitions: both call forms, nested basenames, mixed formats, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astreaming.errors import ConfigError, FormatError
from astreaming.format.jsonl import JSONWriter
from astreaming.format.local import LocalDataset
from astreaming.format.mds.writer import MDSWriter
from astreaming.format.merge import merge_index


def _partitions(root: Path) -> list[Path]:
    parts = []
    for p, (lo, hi) in enumerate([(0, 5), (5, 9), (9, 12)]):
        out = root / f"part{p}"
        if p == 1:
            with JSONWriter(out=str(out), columns={"id": "int"}, compression="zstd", size_limit=30) as w:
                for i in range(lo, hi):
                    w.write({"id": i})
        else:
            with MDSWriter(out=str(out), columns={"id": "int"}, size_limit=120) as w:
                for i in range(lo, hi):
                    w.write({"id": i})
        parts.append(out / "index.json")
    return parts


def test_merge_list_form(tmp_path: Path) -> None:
    parts = _partitions(tmp_path)
    merge_index([str(p) for p in parts], str(tmp_path), keep_local=True, download_timeout=60)
    text = (tmp_path / "index.json").read_text()
    assert text.startswith('{"version": 2, "shards": [')
    obj = json.loads(text)
    assert {s["format"] for s in obj["shards"]} == {"mds", "json"}
    assert all(s["raw_data"]["basename"].split("/")[0].startswith("part") for s in obj["shards"])
    ds = LocalDataset(tmp_path)
    assert [ds[i]["id"] for i in range(len(ds))] == list(range(12))
    assert all(p.exists() for p in parts)  # partition indexes stay
    # (local, remote) tuples use the local path; `out=` as a keyword works too.
    merge_index(index_file_urls=[(str(p), "s3://unused/x") for p in reversed(parts)], out=str(tmp_path))
    ds = LocalDataset(tmp_path)
    assert [ds[i]["id"] for i in range(len(ds))] == [9, 10, 11, 5, 6, 7, 8, 0, 1, 2, 3, 4]


def test_merge_root_form_finds_nested_partitions(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    with MDSWriter(out=str(nested), columns={"id": "int"}) as w:
        w.write({"id": 100})
    with MDSWriter(out=str(tmp_path / "0"), columns={"id": "int"}) as w:
        w.write({"id": 0})
    (tmp_path / "index.json").write_text("stale: the root's own index is not a partition")
    merge_index(str(tmp_path))
    obj = json.loads((tmp_path / "index.json").read_text())
    assert [s["raw_data"]["basename"] for s in obj["shards"]] == ["0/shard.00000.mds", "a/b/shard.00000.mds"]
    ds = LocalDataset(tmp_path)
    assert [ds[0]["id"], ds[1]["id"]] == [0, 100]


def test_merge_of_merged_partitions(tmp_path: Path) -> None:
    parts = _partitions(tmp_path / "inner")
    merge_index([str(p) for p in parts], str(tmp_path / "inner"))
    merge_index([str(tmp_path / "inner" / "index.json")], str(tmp_path))
    obj = json.loads((tmp_path / "index.json").read_text())
    assert obj["shards"][0]["raw_data"]["basename"] == "inner/part0/shard.00000.mds"
    assert len(LocalDataset(tmp_path)) == 12


def test_merge_errors(tmp_path: Path) -> None:
    parts = _partitions(tmp_path / "root")
    with pytest.raises(ConfigError, match="no partition"):
        merge_index([], str(tmp_path))
    with pytest.raises(ConfigError, match="not inside out"):
        merge_index([str(parts[0])], str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="remote paths are not supported yet"):
        merge_index([str(parts[0])], "s3://bucket/out")
    with pytest.raises(ConfigError, match="unknown argument 'bogus'"):
        merge_index([str(parts[0])], str(tmp_path), bogus=1)
    with pytest.raises(ConfigError, match="missing argument 'out'"):
        merge_index([str(parts[0])])
    with pytest.raises(ConfigError, match=r"no partition index\.json"):
        merge_index(str(tmp_path / "empty_root"))
    with pytest.raises(FormatError, match="partition index not found"):
        merge_index([str(tmp_path / "root" / "nope" / "index.json")], str(tmp_path / "root"))
    bad = json.loads(parts[1].read_text())
    bad["shards"][0]["extra"] = 1
    parts[1].write_text(json.dumps(bad))
    with pytest.raises(FormatError, match=r"part1/index\.json: shard 0: unknown key 'extra'"):
        merge_index([str(p) for p in parts], str(tmp_path / "root"))
    assert not (tmp_path / "root" / "index.json").exists()
