"""``astreaming merge``: both forms of merge_index, the merged dataset reads back, errors exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import RunCLI

from astreaming.format.local import LocalDataset
from astreaming.output.writers import MDSWriter
from astreaming.testing.servers import MotoS3Server

PARTS = {"part-a": range(0, 30), "part-b": range(30, 75)}


@pytest.fixture
def out_root(tmp_path: Path) -> Path:
    """A dataset root with two partitions (each with its own index.json) and no merged index yet."""
    root = tmp_path / "dataset"
    for name, ids in PARTS.items():
        with MDSWriter(out=str(root / name), columns={"id": "int", "name": "str"}, size_limit=400) as w:
            for i in ids:
                w.write({"id": i, "name": f"n{i}"})
    return root


def _check_merged(root: Path, order: list[str]) -> None:
    merged = json.loads((root / "index.json").read_text())
    expected = []
    for part in order:
        for shard in json.loads((root / part / "index.json").read_text())["shards"]:
            expected.append(f"{part}/{shard['raw_data']['basename']}")
    assert [s["raw_data"]["basename"] for s in merged["shards"]] == expected
    ds = LocalDataset(root)
    ids = [int(ds[i]["id"]) for i in range(len(ds))]
    assert ids == [i for part in order for i in PARTS[part]]
    assert [ds[i]["name"] for i in (0, len(ds) - 1)] == [f"n{ids[0]}", f"n{ids[-1]}"]


def test_merge_explicit_partitions_in_given_order(run_cli: RunCLI, out_root: Path) -> None:
    proc = run_cli("merge", out_root, out_root / "part-b", out_root / "part-a" / "index.json")
    assert proc.returncode == 0, proc.stderr
    _check_merged(out_root, ["part-b", "part-a"])
    shards = len(json.loads((out_root / "index.json").read_text())["shards"])
    assert f"merged 2 partitions into {out_root / 'index.json'}: {shards} shards, 75 samples" in proc.stdout


def test_merge_root_form_finds_every_partition(run_cli: RunCLI, out_root: Path) -> None:
    proc = run_cli("merge", out_root)
    assert proc.returncode == 0, proc.stderr
    _check_merged(out_root, ["part-a", "part-b"])  # sorted
    assert "75 samples" in proc.stdout


def test_merge_root_without_partitions_fails(run_cli: RunCLI, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("merge", empty)
    assert proc.returncode == 1
    assert f"no partition index.json found below {empty}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (empty / "index.json").exists()


def test_merge_partition_outside_out_fails(run_cli: RunCLI, out_root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    with MDSWriter(out=str(elsewhere), columns={"id": "int", "name": "str"}) as w:
        w.write({"id": 0, "name": "x"})
    proc = run_cli("merge", out_root, out_root / "part-a", elsewhere)
    assert proc.returncode == 1
    assert str(elsewhere) in proc.stderr
    assert not (out_root / "index.json").exists()


def test_merge_and_inspect_on_s3(run_cli: RunCLI, out_root: Path, tmp_path: Path) -> None:
    """Partitions uploaded to (moto) S3 out of band; merge lists and merges them remotely."""
    bucket, prefix = "astreaming-cli", "ds"
    with MotoS3Server() as server:
        server.create_bucket(bucket)
        client = server.client()
        try:
            for path in sorted(p for p in out_root.rglob("*") if p.is_file()):
                key = f"{prefix}/{path.relative_to(out_root).as_posix()}"
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            env = {
                **MotoS3Server.credentials,
                "S3_ENDPOINT_URL": server.url,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            url = f"s3://{bucket}/{prefix}"
            proc = run_cli("merge", url, env=env)
            assert proc.returncode == 0, proc.stderr
            assert f"into {url}/index.json" in proc.stdout
            assert "75 samples" in proc.stdout
            merged = client.get_object(Bucket=bucket, Key=f"{prefix}/index.json")["Body"].read()
            inspected = run_cli("inspect", url, "--json", env=env)
        finally:
            client.close()
    # Same merged index as a local merge of the same partitions.
    local = run_cli("merge", out_root)
    assert local.returncode == 0, local.stderr
    assert json.loads(merged) == json.loads((out_root / "index.json").read_text())
    assert inspected.returncode == 0, inspected.stderr
    got = json.loads(inspected.stdout)
    assert got["samples"] == 75
    assert got["shards"] == len(json.loads(merged)["shards"])
