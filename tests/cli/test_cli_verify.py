"""``astreaming verify``: good datasets pass; truncated, flipped, missing and undecodable shards are named."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import RunCLI
from cli_remotes import GCS_BUCKET, gcs_env, gcs_url

from astreaming.output.writers import MDSWriter
from astreaming.testing.servers import FakeGCSServer, StaticHTTPServer, free_port


def _dataset(
    root: Path, *, compression: str | None = None, hashes: tuple[str, ...] = ("sha1", "xxh64")
) -> list[str]:
    """Five shards of 20 samples; returns the basenames of the stored files, in index order."""
    with MDSWriter(
        out=str(root),
        columns={"id": "int", "text": "str", "vec": "ndarray:float32:4"},
        size_limit=1000,
        compression=compression,
        hashes=list(hashes),
    ) as w:
        for i in range(100):
            w.write({"id": i, "text": f"sample {i}" * 3, "vec": np.full(4, i, np.float32)})
    index = json.loads((root / "index.json").read_text())
    return [(s["zip_data"] or s["raw_data"])["basename"] for s in index["shards"]]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def test_good_dataset_passes(run_cli: RunCLI, tmp_path: Path) -> None:
    files = _dataset(tmp_path / "ds", compression="zstd")
    proc = run_cli("verify", tmp_path / "ds")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(files)} shards, 100 samples" in proc.stdout and "hashes: sha1, xxh64" in proc.stdout
    assert f"{len(files)} ok, 0 bad" in proc.stdout
    report = json.loads(run_cli("verify", tmp_path / "ds", "--json", "--decode-all").stdout)
    assert report["decoded"] == 100 and report["bad"] == []


def test_truncated_flipped_and_missing_shards_are_each_named(run_cli: RunCLI, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    files = _dataset(root)
    (root / files[1]).write_bytes((root / files[1]).read_bytes()[:-7])  # truncated
    _flip(root / files[2], 400)  # a flipped byte in a sample: same size
    (root / files[4]).unlink()  # missing
    proc = run_cli("verify", root)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"{len(files) - 3} ok, 3 bad" in out
    assert f"bad shard 1 ({files[1]}): " in out and "bytes, the index says" in out
    assert (
        f"bad shard 2 ({files[2]}): sha1 digest" in out and f"bad shard 2 ({files[2]}): xxh64 digest" in out
    )
    assert f"bad shard 4 ({files[4]}): missing" in out
    assert "bad shard 0" not in out and "bad shard 3" not in out
    assert f"3 bad shards: 1 ({files[1]}), 2 ({files[2]}), 4 ({files[4]})" in proc.stderr


def test_without_hashes_a_corrupt_value_fails_to_decode(run_cli: RunCLI, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    files = _dataset(root, hashes=())
    data = bytearray((root / files[0]).read_bytes())
    # Break the offsets table: sample 0's end points past the file (the size stays right).
    data[8:12] = (len(data) + 10).to_bytes(4, "little")
    (root / files[0]).write_bytes(bytes(data))
    proc = run_cli("verify", root)
    assert proc.returncode == 1
    assert f"bad shard 0 ({files[0]}):" in proc.stdout
    assert "hashes: none recorded" in proc.stdout


def test_corrupt_compressed_shard(run_cli: RunCLI, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    files = _dataset(root, compression="zstd", hashes=())
    _flip(root / files[3], 20)
    proc = run_cli("verify", root)
    raw = files[3].removesuffix(".zstd")  # shards are named by their raw file
    assert proc.returncode == 1 and f"bad shard 3 ({raw}): {files[3]}: does not decompress" in proc.stdout


def test_unreachable_url_exits_1(run_cli: RunCLI) -> None:
    url = f"http://127.0.0.1:{free_port()}/ds"
    proc = run_cli("verify", url, "--retries", "0", "--timeout", "5")
    assert proc.returncode == 1
    assert proc.stderr.startswith("astreaming verify: error:"), proc.stderr  # no retry: one attempt
    assert "connection refused by 127.0.0.1" in proc.stderr


def test_missing_index_exits_1(run_cli: RunCLI, tmp_path: Path) -> None:
    proc = run_cli("verify", tmp_path)
    assert proc.returncode == 1 and "no index.json there" in proc.stderr


def _gcs_delete(server: FakeGCSServer, key: str) -> None:
    name = urllib.parse.quote(key, safe="")
    req = urllib.request.Request(f"{server.url}/storage/v1/b/{GCS_BUCKET}/o/{name}", method="DELETE")
    urllib.request.urlopen(req, timeout=30).close()  # a DELETE answers 204: nothing to read


def test_on_fake_gcs(run_cli: RunCLI, tmp_path: Path, gcs_server: FakeGCSServer) -> None:
    root = tmp_path / "ds"
    files = _dataset(root, compression="zstd")
    url, env = gcs_url(gcs_server), gcs_env(gcs_server)
    prefix = url.removeprefix(f"gs://{GCS_BUCKET}/")
    for path in sorted(root.iterdir()):
        gcs_server.put_object(GCS_BUCKET, f"{prefix}/{path.name}", path.read_bytes())
    good = run_cli("verify", url, env=env)
    assert good.returncode == 0, good.stderr
    assert f"{len(files)} ok, 0 bad" in good.stdout
    gcs_server.put_object(GCS_BUCKET, f"{prefix}/{files[0]}", (root / files[0]).read_bytes()[:-1])
    _gcs_delete(gcs_server, f"{prefix}/{files[2]}")
    bad = run_cli("verify", url, env=env)
    assert bad.returncode == 1
    raw = [f.removesuffix(".zstd") for f in files]
    assert f"bad shard 0 ({raw[0]}): {files[0]}: " in bad.stdout and "the index says" in bad.stdout
    assert f"bad shard 2 ({raw[2]}): {files[2]}: missing" in bad.stdout
    assert f"{len(files) - 2} ok, 2 bad" in bad.stdout


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_bad_jobs(run_cli: RunCLI, tmp_path: Path, jobs: str) -> None:
    _dataset(tmp_path / "ds")
    proc = run_cli("verify", tmp_path / "ds", "--jobs", jobs)
    assert proc.returncode == 1 and "--jobs" in proc.stderr


def test_over_http(run_cli: RunCLI, tmp_path: Path) -> None:
    files = _dataset(tmp_path / "ds", compression="zstd")
    with StaticHTTPServer(tmp_path) as server:
        good = run_cli("verify", f"{server.url}/ds")
        (tmp_path / "ds" / files[1]).unlink()
        bad = run_cli("verify", f"{server.url}/ds/index.json", "--retries", "0")
    assert good.returncode == 0 and f"{len(files)} ok, 0 bad" in good.stdout
    assert bad.returncode == 1 and f"{files[1]}: missing" in bad.stdout
