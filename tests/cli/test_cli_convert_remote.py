"""``astreaming convert`` from remote sources (fake-gcs-server, moto S3, Azurite, HTTP), and a single CSV
split between workers at record boundaries."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import RunCLI, read_local
from cli_remotes import Remote
from convert_sources import (
    csv_rows,
    jsonl_rows,
    tree_bytes,
    write_csv,
    write_image_folder,
    write_jsonl,
    write_parquet,
)

from astreaming.convert import ConvertOptions, convert
from astreaming.testing.servers import StaticHTTPServer


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Unclosed" not in proc.stderr  # every storage client closed, in the parent and each worker
    return str(proc.stdout)


def _sources(root: Path) -> None:
    """One source of each kind below ``root``; the image folder has a nested folder (walk order)."""
    root.mkdir()
    write_jsonl(root / "rows.jsonl", jsonl_rows(150))
    write_csv(root / "items.csv", csv_rows(80))
    (root / "pq").mkdir()
    write_parquet(root / "pq" / "part-0.parquet", 25)
    write_parquet(root / "pq" / "part-1.parquet", 7)
    (root / "pq" / "_SUCCESS").write_text("")
    write_image_folder(root / "imgs")
    nested = root / "imgs" / "cat" / "more"
    nested.mkdir()
    (nested / "deep.png").write_bytes((root / "imgs" / "cat" / "img_0.png").read_bytes())
    (root / "imgs" / "cat" / "zz.png").write_bytes((root / "imgs" / "dog" / "img_1.png").read_bytes())


def test_remote_sources_give_the_local_bytes(run_cli: RunCLI, tmp_path: Path, remote: Remote) -> None:
    url, env, put, _ = remote
    local = tmp_path / "src"
    _sources(local)
    for rel, data in tree_bytes(local).items():
        put(rel, data)
    args = ["--size-limit", "1kb", "--compression", "zstd", "--hashes", "xxh64"]
    runs = [("rows.jsonl", "1"), ("items.csv", "2"), ("pq", "2"), ("imgs", "1")]
    for name, workers in runs:
        from_local, from_remote = tmp_path / f"local-{name}", tmp_path / f"remote-{name}"
        options = ConvertOptions(size_limit="1kb", compression="zstd", hashes=["xxh64"], workers=int(workers))
        convert(local / name, str(from_local), options)  # the reference, from disk
        out = _ok(run_cli("convert", f"{url}/{name}", from_remote, *args, "--workers", workers, env=env))
        assert f"wrote {from_remote}" in out
        # Read by range requests from the store, the same rows give the same bytes as from disk.
        assert tree_bytes(from_remote) == tree_bytes(from_local), name
    paths = [s["path"] for s in read_local(tmp_path / "remote-imgs")]
    assert paths[:5] == ["cat/img_0.png", "cat/img_1.png", "cat/img_2.png", "cat/zz.png", "cat/more/deep.png"]


def test_http_source_file_and_errors(run_cli: RunCLI, tmp_path: Path) -> None:
    rows = csv_rows(40)
    write_csv(tmp_path / "items.csv", rows)
    (tmp_path / "dir").mkdir()
    write_jsonl(tmp_path / "dir" / "a.jsonl", jsonl_rows(3))
    with StaticHTTPServer(tmp_path) as server:
        good = run_cli("convert", f"{server.url}/items.csv", tmp_path / "out", "--workers", "2")
        missing = run_cli("convert", f"{server.url}/nope.csv", tmp_path / "out2")
        folder = run_cli("convert", f"{server.url}/dir", tmp_path / "out3")
    _ok(good)
    got = read_local(tmp_path / "out")
    assert [(r["id"], r["name"]) for r in got] == [(r["id"], r["name"]) for r in rows]
    assert missing.returncode == 1 and f"{server.url}/nope.csv does not exist" in missing.stderr
    assert "Unclosed" not in missing.stderr + folder.stderr
    # HTTP cannot list a directory: the URL is taken for one object, which the server refuses.
    assert folder.returncode == 1 and f"{server.url}/dir: access denied" in folder.stderr


def _tricky_csv(n: int) -> tuple[str, list[list[str]]]:
    """CSV whose quoted fields hold newlines, doubled quotes and lines that look like records."""
    rows = [["id", "text", "score"]]
    for i in range(n):
        text = f'note "{i}"\n{i},fake,{i}.5\nend' if i % 2 else f"plain {i}"
        rows.append([str(i), text, f"{i}.25"])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue(), rows[1:]


def test_one_csv_split_between_workers_at_record_boundaries(run_cli: RunCLI, tmp_path: Path) -> None:
    text, rows = _tricky_csv(900)
    src = tmp_path / "big.csv"
    src.write_text(text)
    one = _ok(run_cli("convert", src, tmp_path / "w1", "--size-limit", "4kb"))
    four = _ok(run_cli("convert", src, tmp_path / "w4", "--size-limit", "4kb", "--workers", "4"))
    assert "from 4 partitions" in four and "from" not in one.split("(")[0].split(":")[1]
    want = [[int(i), t, float(s)] for i, t, s in rows]
    for out in ("w1", "w4"):
        got = read_local(tmp_path / out)
        assert [[int(r["id"]), r["text"], float(r["score"])] for r in got] == want, out
    # A naive split at a newline would cut inside a quoted field: the partitions start at records.
    index = json.loads((tmp_path / "w4" / "index.json").read_text())
    assert len({s["raw_data"]["basename"].split("/")[0] for s in index["shards"]}) == 4


@pytest.mark.parametrize("ending", ["\r", "\r\n"], ids=["cr", "crlf"])
def test_csv_lines_may_end_with_cr_or_crlf(run_cli: RunCLI, tmp_path: Path, ending: str) -> None:
    text, rows = _tricky_csv(300)
    records = list(csv.reader(io.StringIO(text)))
    buf = io.StringIO()
    csv.writer(buf, lineterminator=ending).writerows(records)  # quoted fields keep their own newlines
    (tmp_path / "mac.csv").write_bytes(buf.getvalue().encode())
    want = [[int(i), t, float(s)] for i, t, s in rows]
    for workers in ("1", "3"):
        out = tmp_path / f"w{workers}"
        _ok(run_cli("convert", tmp_path / "mac.csv", out, "--size-limit", "4kb", "--workers", workers))
        assert [[int(r["id"]), r["text"], float(r["score"])] for r in read_local(out)] == want, workers


def test_bad_row_in_a_later_csv_unit_names_its_line(run_cli: RunCLI, tmp_path: Path) -> None:
    text, _ = _tricky_csv(600)
    lines = text.split("\n")
    # Break a record near the end: a plain row (even id) with an extra field.
    target = next(k for k in range(len(lines) - 1, 0, -1) if lines[k].startswith("590,"))
    lines[target] += ",extra"
    (tmp_path / "bad.csv").write_text("\n".join(lines))
    proc = run_cli("convert", tmp_path / "bad.csv", tmp_path / "out", "--workers", "3")
    assert proc.returncode == 1
    assert f"bad.csv:{target + 1}: 4 fields, the header has 3" in proc.stderr
    assert not (tmp_path / "out" / "index.json").exists()
