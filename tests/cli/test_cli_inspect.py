"""``astreaming inspect``: a dataset written here, read locally and over HTTP; errors name the path.

Expected values are computed from index.json with the ``json`` module, independently of the parser
that ``inspect`` uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import RunCLI

from astreaming.output.writers import JSONWriter, MDSWriter
from astreaming.testing.servers import StaticHTTPServer

SAMPLES = 500


@pytest.fixture
def mds_dir(tmp_path: Path) -> Path:
    root = tmp_path / "mds"
    with MDSWriter(
        out=str(root),
        columns={"label": "int", "text": "str", "blob": "bytes"},
        compression="zstd",
        hashes=["md5", "xxh64"],
        size_limit=8000,
    ) as writer:
        for i in range(SAMPLES):
            writer.write({"label": i, "text": f"sample {i}", "blob": bytes(range(i % 50))})
    return root


def _index(root: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((root / "index.json").read_text())
    return obj


def test_inspect_json_describes_the_index(run_cli: RunCLI, mds_dir: Path) -> None:
    proc = run_cli("inspect", mds_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    shards = _index(mds_dir)["shards"]
    assert len(shards) > 3  # the size limit splits the dataset
    assert got["index"] == str(mds_dir / "index.json")
    assert got["shards"] == len(shards)
    assert got["samples"] == SAMPLES == sum(s["samples"] for s in shards)
    assert got["formats"] == ["mds"]
    assert got["compression"] == ["zstd"]
    assert got["hashes"] == ["md5", "xxh64"]
    assert got["columns"] == {"blob": "bytes", "label": "int", "text": "str"}
    assert got["column_schemas"] == 1
    assert got["raw_bytes"] == sum(s["raw_data"]["bytes"] for s in shards)
    assert got["stored_bytes"] == sum(s["zip_data"]["bytes"] for s in shards)
    assert got["stored_bytes"] == sum(f.stat().st_size for f in mds_dir.glob("shard.*.mds.zstd"))
    assert got["size_limits"] == [8000]
    for row, shard in zip(got["shard_list"], shards, strict=True):
        assert row["samples"] == shard["samples"]
        assert row["files"] == [shard["zip_data"]]  # what a reader downloads, with its full digests


def test_inspect_text(run_cli: RunCLI, mds_dir: Path) -> None:
    proc = run_cli("inspect", mds_dir)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    shards = _index(mds_dir)["shards"]
    assert f"shards:       {len(shards)}\n" in out
    assert "samples:      500\n" in out
    assert "compression:  zstd\n" in out
    assert "hashes:       md5, xxh64\n" in out
    assert "columns:      blob:bytes, label:int, text:str\n" in out
    # One table row per shard, with its file and the start of its digests.
    for i, shard in enumerate(shards):
        zip_data = shard["zip_data"]
        row = next(line for line in out.splitlines() if zip_data["basename"] in line)
        assert row.split()[0] == str(i)
        assert f"md5={zip_data['hashes']['md5'][:12]}" in row
    summary = run_cli("inspect", mds_dir, "--summary")
    assert summary.returncode == 0
    assert shards[0]["zip_data"]["basename"] not in summary.stdout
    assert "samples:      500" in summary.stdout
    as_json = run_cli("inspect", mds_dir, "--summary", "--json")
    assert as_json.returncode == 0
    brief = json.loads(as_json.stdout)
    assert "shard_list" not in brief and brief["samples"] == 500 and brief["shards"] == len(shards)
    assert "shard_list" in json.loads(run_cli("inspect", mds_dir, "--json").stdout)


def test_inspect_jsonl_and_index_file_path(run_cli: RunCLI, tmp_path: Path) -> None:
    root = tmp_path / "jsonl"
    with JSONWriter(out=str(root), columns={"q": "str", "score": "float"}, hashes=["sha256"]) as writer:
        for i in range(20):
            writer.write({"q": f"question {i}", "score": i / 4})
    proc = run_cli("inspect", root / "index.json", "--json")  # the index itself, not its directory
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["formats"] == ["json"]
    assert got["compression"] == ["none"]
    assert got["columns"] == {"q": "str", "score": "float"}
    assert got["samples"] == 20
    shard = _index(root)["shards"][0]
    # A JSONL shard is a data file and a .meta file: both are fetched and both are listed.
    assert got["shard_list"][0]["files"] == [shard["raw_data"], shard["raw_meta"]]
    assert got["raw_bytes"] == shard["raw_data"]["bytes"] + shard["raw_meta"]["bytes"]


def test_inspect_over_http(run_cli: RunCLI, mds_dir: Path) -> None:
    local = json.loads(run_cli("inspect", mds_dir, "--json").stdout)
    with StaticHTTPServer(mds_dir.parent) as server:
        url = f"{server.url}/{mds_dir.name}"
        proc = run_cli("inspect", url, "--json")
    assert proc.returncode == 0, proc.stderr
    remote = json.loads(proc.stdout)
    assert remote["index"] == f"{url}/index.json"
    local.pop("index")
    remote.pop("index")
    assert remote == local


def test_inspect_missing_directory(run_cli: RunCLI, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dataset"
    proc = run_cli("inspect", missing)
    assert proc.returncode == 1
    assert str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_inspect_missing_over_http(run_cli: RunCLI, tmp_path: Path) -> None:
    with StaticHTTPServer(tmp_path) as server:
        proc = run_cli("inspect", f"{server.url}/nothing-here")
    assert proc.returncode == 1
    assert f"{server.url}/nothing-here/index.json" in proc.stderr


def test_inspect_invalid_index(run_cli: RunCLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.json").write_text('{"version": 2, "shards": [{"format": "parquet"}]}')
    proc = run_cli("inspect", bad)
    assert proc.returncode == 1
    assert str(bad / "index.json") in proc.stderr
    assert "format" in proc.stderr
