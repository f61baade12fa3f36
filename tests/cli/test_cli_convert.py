"""``astreaming convert``: every source type read back row by row, determinism, workers, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import RunCLI, read_local
from cli_remotes import S3_BUCKET, gcs_env, gcs_url, read_remote, s3_env
from convert_sources import (
    csv_rows,
    jsonl_rows,
    tree_bytes,
    write_csv,
    write_image_folder,
    write_jsonl,
    write_parquet,
)

from astreaming.format.local import LocalDataset
from astreaming.testing.servers import FakeGCSServer, MotoS3Server


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stderr
    return str(proc.stdout)


def test_jsonl_round_trip_and_byte_identical_reruns(run_cli: RunCLI, tmp_path: Path) -> None:
    rows = jsonl_rows(300)
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    args = ["--size-limit", "2kb", "--compression", "zstd", "--hashes", "sha1,xxh64"]
    out = _ok(run_cli("convert", src, tmp_path / "a", *args))
    assert "300 samples" in out and "id:int, score:float64, tags:json, text:str" in out
    _ok(run_cli("convert", src, tmp_path / "b", *args))
    first, second = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(first) > 3 and first == second  # same input and settings: the same bytes
    index = json.loads(first["index.json"])
    assert {s["compression"] for s in index["shards"]} == {"zstd"}
    assert all(set(s["raw_data"]["hashes"]) == {"sha1", "xxh64"} for s in index["shards"])
    assert read_local(tmp_path / "a") == rows


def test_workers_write_partitions_merged_in_source_order(run_cli: RunCLI, tmp_path: Path) -> None:
    rows = jsonl_rows(400)
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = _ok(run_cli("convert", src, tmp_path / "par", "--workers", "3", "--size-limit", "2kb"))
    assert "from 3 partitions" in out
    assert sorted(p.name for p in (tmp_path / "par").iterdir()) == [
        "index.json",
        "part-00000",
        "part-00001",
        "part-00002",
    ]
    assert read_local(tmp_path / "par") == rows


def test_csv_and_tsv_inferred_and_overridden(run_cli: RunCLI, tmp_path: Path) -> None:
    rows = csv_rows(50)
    src = write_csv(tmp_path / "items.csv", rows)
    out = _ok(run_cli("convert", src, tmp_path / "csv"))
    assert "id:int, name:str, price:float64" in out
    got = read_local(tmp_path / "csv")
    assert [(r["id"], float(r["price"]), r["name"]) for r in got] == [
        (r["id"], r["price"], r["name"]) for r in rows
    ]
    tsv = write_csv(tmp_path / "items.tsv", rows, delimiter="\t")
    _ok(run_cli("convert", tsv, tmp_path / "tsv", "--columns", "id:int32,price:str"))
    got = read_local(tmp_path / "tsv")
    assert all(isinstance(r["id"], np.int32) for r in got)
    assert [(int(r["id"]), r["price"]) for r in got] == [(r["id"], str(r["price"])) for r in rows]


def test_parquet_types_and_nulls(run_cli: RunCLI, tmp_path: Path) -> None:
    src = tmp_path / "pq"
    src.mkdir()
    rows = write_parquet(src / "part-0.parquet", 25) + write_parquet(src / "part-1.parquet", 5)
    (src / "_SUCCESS").write_text("")  # Spark's marker file is not a data file
    out = _ok(run_cli("convert", src, tmp_path / "out", "--workers", "2"))
    assert "b:bytes, emb:ndarray:float64, f32:float32, i32:int32, maybe:json, s:str" in out
    got = read_local(tmp_path / "out")
    assert len(got) == len(rows)
    for want, have in zip(rows, got, strict=True):
        assert isinstance(have["i32"], np.int32) and int(have["i32"]) == want["i32"]
        assert float(have["f32"]) == want["f32"] and have["s"] == want["s"] and have["b"] == want["b"]
        assert have["emb"].tolist() == want["emb"] and have["maybe"] == want["maybe"]


def test_image_folder_keeps_file_bytes_labels_and_classes(run_cli: RunCLI, tmp_path: Path) -> None:
    files = write_image_folder(tmp_path / "imgs")
    out = _ok(run_cli("convert", tmp_path / "imgs", tmp_path / "out", "--size-limit", "300b"))
    assert "image:png, label:int, path:str" in out
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"classes": ["cat", "dog"]}
    ds = LocalDataset(tmp_path / "out")
    try:
        assert len(ds) == len(files)
        for i, (rel, label, data) in enumerate(files):
            sample = ds[i]
            assert (sample["path"], sample["label"]) == (rel, label)
            shard, local = ds.locate(i)
            raw = ds._reader(shard).get_bytes(local)
            assert data in raw  # stored as the file's bytes, not re-encoded
            assert sample["image"].size == (5, 4 + i % 3)
    finally:
        ds.close()


def test_image_folder_with_workers_keeps_the_order(run_cli: RunCLI, tmp_path: Path) -> None:
    files = write_image_folder(tmp_path / "imgs", per_class=5)
    out = _ok(run_cli("convert", tmp_path / "imgs", tmp_path / "out", "--workers", "3"))
    assert "10 samples" in out and "from 3 partitions" in out
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"classes": ["cat", "dog"]}
    got = read_local(tmp_path / "out")
    assert [(s["path"], s["label"]) for s in got] == [(rel, label) for rel, label, _ in files]


def test_mixed_image_folder_needs_columns(run_cli: RunCLI, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs")
    write_image_folder(tmp_path / "jpgs", fmt="JPEG")
    (tmp_path / "jpgs" / "cat" / "img_0.jpg").rename(tmp_path / "imgs" / "cat" / "extra.jpg")
    proc = run_cli("convert", tmp_path / "imgs", tmp_path / "out")
    assert proc.returncode == 1 and "mixes JPEG" in proc.stderr and "--columns image:png" in proc.stderr
    _ok(run_cli("convert", tmp_path / "imgs", tmp_path / "out", "--columns", "image:png"))
    got = read_local(tmp_path / "out")
    assert got[0]["path"] == "cat/extra.jpg" and got[0]["image"].format == "PNG"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"id": 1}\n{"id": 2\n', "rows.jsonl:2: not valid JSON"),
        ('{"id": 1}\n[1, 2]\n', "rows.jsonl:2: expected a JSON object"),
        ('{"id": 1}\n{"id": 2, "new": 3}\n', "rows.jsonl:2: column 'new' is not among the columns"),
    ],
)
def test_unreadable_rows_fail_naming_the_line(
    run_cli: RunCLI, tmp_path: Path, content: str, expected: str
) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(content)
    proc = run_cli("convert", src, tmp_path / "out", "--infer-rows", "1")
    assert proc.returncode == 1
    assert expected in proc.stderr
    assert not (tmp_path / "out" / "index.json").exists()


def test_jsonl_with_a_utf8_bom_converts(run_cli: RunCLI, tmp_path: Path) -> None:
    """Lines are parsed as UTF-8 directly; a line that needs json's own detection (the BOM some editors
    write at the start of a file) still parses."""
    src = tmp_path / "rows.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"id": 0, "t": "\xc3\xa9"}\n{"id": 1, "t": "b"}\n')
    _ok(run_cli("convert", src, tmp_path / "out"))
    assert [(r["id"], r["t"]) for r in read_local(tmp_path / "out")] == [(0, "\u00e9"), (1, "b")]


def test_value_past_inferred_rows_fails_with_hint(run_cli: RunCLI, tmp_path: Path) -> None:
    rows = [{"x": i} for i in range(20)] + [{"x": "twenty"}]
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    proc = run_cli("convert", src, tmp_path / "out", "--infer-rows", "10")
    assert proc.returncode == 1
    assert "rows.jsonl:22: column 'x': cannot store 'twenty' as int" in proc.stderr
    assert "--columns" in proc.stderr and not (tmp_path / "out" / "index.json").exists()
    _ok(run_cli("convert", src, tmp_path / "out2", "--infer-rows", "0"))
    assert [r["x"] for r in read_local(tmp_path / "out2")] == [r["x"] for r in rows]


def test_failed_worker_publishes_no_index(run_cli: RunCLI, tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"x": i} for i in range(200)]
    rows[180] = {"x": "bad"}
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    proc = run_cli("convert", src, tmp_path / "out", "--workers", "2", "--infer-rows", "50")
    assert proc.returncode == 1 and "cannot store 'bad' as int" in proc.stderr
    assert not (tmp_path / "out" / "index.json").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.jsonl"], "missing.jsonl does not exist"),
        (["rows.jsonl", "--columns", "x:complex"], "--columns: column 'x'"),
        (["rows.jsonl", "--columns", "nope:int"], None),  # JSONL may add columns: nope is then missing
        (["rows.csv", "--columns", "nope:int"], "the source has no column 'nope'"),
        (["rows.jsonl", "--compression", "lz9"], "lz9"),
        (["rows.jsonl", "--hashes", "xxh64,sha1"], "sorted"),
        (["notes.txt"], "cannot tell the format of"),
    ],
)
def test_bad_arguments_exit_1(run_cli: RunCLI, tmp_path: Path, args: list[str], expected: str | None) -> None:
    write_jsonl(tmp_path / "rows.jsonl", [{"x": 1}])
    write_csv(tmp_path / "rows.csv", [{"x": 1}])
    (tmp_path / "notes.txt").write_text("hello\n")
    proc = run_cli("convert", tmp_path / args[0], tmp_path / "out", *args[1:])
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith("astreaming convert: error:")
    if expected is not None:
        assert expected in proc.stderr
    else:
        assert "no value for column 'nope'" in proc.stderr


def test_existing_output_needs_overwrite(run_cli: RunCLI, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "rows.jsonl", jsonl_rows(10))
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        _ok(run_cli("convert", src, out, "--workers", workers))
        proc = run_cli("convert", src, out, "--workers", workers)
        assert proc.returncode == 1 and "not empty" in proc.stderr
        _ok(run_cli("convert", src, out, "--workers", workers, "--overwrite"))
        assert len(read_local(out)) == 10


def test_convert_to_gcs_with_workers_reads_back(
    run_cli: RunCLI, tmp_path: Path, gcs_server: FakeGCSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = jsonl_rows(120)
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    url, env = gcs_url(gcs_server), gcs_env(gcs_server)
    out = _ok(run_cli("convert", src, url, "--workers", "2", "--size-limit", "1kb", env=env))
    assert f"wrote {url}: 120 samples" in out and "from 2 partitions" in out
    assert read_remote(url, tmp_path / "cache", env, monkeypatch) == rows
    again = run_cli("convert", src, url, env=env)
    assert again.returncode == 1 and "not empty" in again.stderr


def test_convert_images_to_s3_reads_back(
    run_cli: RunCLI, tmp_path: Path, s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_image_folder(tmp_path / "imgs", fmt="JPEG")
    s3_server.create_bucket(S3_BUCKET)
    url, env = f"s3://{S3_BUCKET}/imgs", s3_env(s3_server, tmp_path)
    _ok(run_cli("convert", tmp_path / "imgs", url, "--compression", "zstd", env=env))
    got = read_remote(url, tmp_path / "cache", env, monkeypatch)
    assert [(s["path"], s["label"]) for s in got] == [(rel, label) for rel, label, _ in files]
    assert all(s["image"].format == "JPEG" for s in got)
    client = s3_server.client()
    try:
        body = client.get_object(Bucket=S3_BUCKET, Key="imgs/classes.json")["Body"].read()
    finally:
        client.close()
    assert json.loads(body) == {"classes": ["cat", "dog"]}
