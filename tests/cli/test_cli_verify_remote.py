"""``astreaming verify`` on fake-gcs-server, moto S3 and Azurite; reads by bounded range requests."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cli_helpers import RunCLI
from cli_remotes import Remote

from astreaming.output.writers import CSVWriter, JSONWriter, MDSWriter
from astreaming.testing.servers import StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy


def _dataset(root: Path, compression: str | None = None) -> list[str]:
    """Five MDS shards of 20 samples (sha1 + xxh64); the basenames of the stored files, in index order."""
    with MDSWriter(
        out=str(root),
        columns={"id": "int", "text": "str"},
        size_limit=1000,
        compression=compression,
        hashes=["sha1", "xxh64"],
    ) as w:
        for i in range(100):
            w.write({"id": i, "text": f"sample {i:03d} " * 2})
    shards = json.loads((root / "index.json").read_text())["shards"]
    assert [s["samples"] for s in shards] == [20] * 5
    return [(s["zip_data"] or s["raw_data"])["basename"] for s in shards]


def _middle_byte(shard: bytes) -> int:
    """The offset of the last byte of sample 10 of an uncompressed MDS shard (inside its text)."""
    start = 4 + 4 * 11
    return int(struct.unpack_from("<I", shard, start)[0]) - 1


def test_remote_corrupted_truncated_and_missing_shards(
    run_cli: RunCLI, tmp_path: Path, remote: Remote
) -> None:
    url, env, put, delete = remote
    root = tmp_path / "ds"
    files = _dataset(root)
    stored = {p.name: p.read_bytes() for p in root.iterdir()}
    for name, data in stored.items():
        put(name, data)
    good = run_cli("verify", url, "--chunk-size", "300", env=env)
    assert good.returncode == 0, good.stderr
    assert "5 ok, 0 bad" in good.stdout and "hashes: sha1, xxh64; 10 samples decoded" in good.stdout

    flipped = bytearray(stored[files[2]])
    flipped[_middle_byte(flipped)] ^= 0x01  # still valid text in a middle sample: only a hash tells
    put(files[2], bytes(flipped))
    put(files[1], stored[files[1]][:-5])  # truncated
    delete(files[4])  # missing
    bad = run_cli("verify", url, "--chunk-size", "300", env=env)
    assert bad.returncode == 1, bad.stderr
    out = bad.stdout
    assert "2 ok, 3 bad" in out
    assert f"bad shard 1 ({files[1]}): {len(stored[files[1]]) - 5:,} bytes, the index says" in out
    assert (
        f"bad shard 2 ({files[2]}): sha1 digest" in out and f"bad shard 2 ({files[2]}): xxh64 digest" in out
    )
    assert f"bad shard 4 ({files[4]}): missing" in out
    assert f"3 bad shards: 1 ({files[1]}), 2 ({files[2]}), 4 ({files[4]})" in bad.stderr

    # --quick: sizes and sampled samples, no hash: the altered middle sample goes unnoticed, by design.
    quick = run_cli("verify", url, "--quick", env=env)
    assert quick.returncode == 1
    assert "hashes: not checked (--quick)" in quick.stdout and "3 ok, 2 bad" in quick.stdout
    assert (
        f"bad shard 1 ({files[1]})" in quick.stdout and f"bad shard 4 ({files[4]}): missing" in quick.stdout
    )
    assert "bad shard 2" not in quick.stdout


@pytest.mark.parametrize("compression", [None, "zstd", "snappy"])
def test_streams_by_bounded_range_requests(run_cli: RunCLI, tmp_path: Path, compression: str | None) -> None:
    files = _dataset(tmp_path / "ds", compression)
    sizes = {name: (tmp_path / "ds" / name).stat().st_size for name in files}
    with StaticHTTPServer(tmp_path) as server, ThreadedFaultProxy(server.url) as proxy:
        full = run_cli("verify", f"{proxy.url}/ds", "--chunk-size", "256", "--json")
        history = [e.key for e in proxy.history]
        proxy_reads = len(history)
        quick = run_cli("verify", f"{proxy.url}/ds", "--quick", "--json")
        quick_history = [e.key for e in proxy.history[proxy_reads:]]
    assert full.returncode == 0, full.stderr
    report = json.loads(full.stdout)
    assert report["bytes"] == sum(sizes.values()) and report["decoded"] == 10
    for name, size in sizes.items():
        gets = [k for k in history if k.startswith(f"GET /ds/{name} ")]
        ranges = [tuple(map(int, k.rsplit("=", 1)[1].split("-"))) for k in gets]
        # Every byte once, front to back, never more than a chunk per request.
        assert ranges == [(s, min(s + 256, size) - 1) for s in range(0, size, 256)], name
    assert quick.returncode == 0, quick.stderr
    quick_report = json.loads(quick.stdout)
    assert quick_report["mode"] == "quick" and quick_report["hashes"] == []
    if compression is None:
        # Offsets table, first and last samples: three small ranges per shard, no whole shard.
        assert quick_report["bytes"] < sum(sizes.values()) / 3
        assert quick_report["decoded"] == 10
        assert all(" bytes=" in k for k in quick_history if k.startswith("GET /ds/shard"))
    else:
        assert quick_report["decoded"] == 5  # the first sample of each compressed shard


@pytest.mark.parametrize("compression", [None, "gz"])
@pytest.mark.parametrize("writer", [JSONWriter, CSVWriter])
def test_jsonl_and_csv_shards(
    run_cli: RunCLI, tmp_path: Path, writer: type[JSONWriter] | type[CSVWriter], compression: str | None
) -> None:
    root = tmp_path / "ds"
    with writer(
        out=str(root),
        columns={"id": "int", "text": "str"},
        size_limit=300,
        compression=compression,
        hashes=["md5"],
    ) as w:
        for i in range(60):
            w.write({"id": i, "text": f"row {i}"})
    with StaticHTTPServer(tmp_path) as server:
        good = run_cli("verify", f"{server.url}/ds", "--decode-all", "--json", "--chunk-size", "100")
        quick = run_cli("verify", f"{server.url}/ds", "--quick", "--json")
        shards = json.loads((root / "index.json").read_text())["shards"]
        data = root / (shards[1]["zip_data"] or shards[1]["raw_data"])["basename"]
        raw = data.read_bytes()
        data.write_bytes(raw[:10] + bytes([raw[10] ^ 0x20]) + raw[11:])
        bad = run_cli("verify", f"{server.url}/ds")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["decoded"] == 60
    assert quick.returncode == 0, quick.stderr
    assert bad.returncode == 1 and f"bad shard 1 ({shards[1]['raw_data']['basename']})" in bad.stdout
    assert "md5 digest" in bad.stdout or "does not decompress" in bad.stdout


def test_pkl_columns_are_decoded_only_when_allowed(run_cli: RunCLI, tmp_path: Path) -> None:
    with MDSWriter(out=str(tmp_path / "ds"), columns={"obj": "pkl"}) as w:
        for i in range(3):
            w.write({"obj": {"i": i}})
    plain = run_cli("verify", tmp_path / "ds")
    assert plain.returncode == 0, plain.stderr
    assert "0 samples decoded" in plain.stdout and "pass --allow-unsafe-types" in plain.stdout
    allowed = run_cli("verify", tmp_path / "ds", "--allow-unsafe-types")
    assert allowed.returncode == 0 and "2 samples decoded" in allowed.stdout
