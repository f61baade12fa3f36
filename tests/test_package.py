"""The package's import contract and command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import astreaming
from astreaming.cli.main import main


def test_import_pulls_in_neither_torch_nor_cloud_sdks() -> None:
    code = (
        "import sys, astreaming, astreaming.errors\n"
        "heavy = [m for m in ('torch', 'aiobotocore', 'gcloud', 'azure', 'aiohttp') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_reading_an_uncompressed_dataset_imports_no_codec(tmp_path: Path) -> None:
    """The codec libraries load on a compressed shard's first use only: ~2 MB of resident memory and
    ~12 ms of import in every process (each spawned DataLoader worker too) that would buy nothing here."""
    code = (
        "import sys\n"
        "from astreaming import MDSWriter, StreamingDataset\n"
        f"out = {str(tmp_path / 'ds')!r}\n"
        "with MDSWriter(out=out, columns={'x': 'int'}) as w:\n"
        "    for i in range(10): w.write({'x': i})\n"
        "ds = StreamingDataset(local=out, batch_size=2, shuffle=False)\n"
        "assert [s['x'] for s in ds] == list(range(10))\n"
        "print(','.join(m for m in ('zstandard', 'brotli', 'cramjam') if m in sys.modules))\n"
        "with MDSWriter(out=out + '-z', columns={'x': 'int'}, compression='zstd') as w:\n"
        "    w.write({'x': 1})\n"
        "print(','.join(m for m in ('zstandard', 'brotli', 'cramjam') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", "zstandard"]  # none after the plain read; zstd once written


_SHARED_FS_READER = """
import json, sys
from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset

CLIENTS = {"aiohttp", "aiobotocore", "botocore", "gcloud", "azure", "yarl"}


def clients():
    return sorted(CLIENTS & {m.split(".")[0] for m in sys.modules})


def collate(batch):  # runs in the DataLoader worker: what that process imported to read its shards
    return [s["x"] for s in batch], clients()


if __name__ == "__main__":
    remote, cache, workers, method, limit = sys.argv[1:6]
    with MDSWriter(out=remote, columns={"x": "int"}, size_limit=200) as writer:
        for i in range(60):
            writer.write({"x": i})
    ds = StreamingDataset(remote=remote, local=cache, batch_size=4, cache_limit=limit or None)
    seen, imported = [], set(clients())
    if workers == "0":
        for sample in ds:
            seen.append(sample["x"])
            imported.update(clients())
    else:
        loader = StreamingDataLoader(
            ds, batch_size=4, num_workers=int(workers), multiprocessing_context=method, collate_fn=collate
        )
        for xs, names in loader:
            seen.extend(xs)
            imported.update(names)
    imported.update(clients())
    print(json.dumps([sorted(seen), sorted(imported)]))
"""


@pytest.mark.parametrize(
    ("workers", "method", "limit"),
    [("0", "", ""), ("0", "", "64kb"), ("2", "fork", ""), ("2", "spawn", "64kb")],
)
def test_a_remote_on_a_shared_filesystem_imports_no_http_client(
    tmp_path: Path, workers: str, method: str, limit: str
) -> None:
    """``remote`` a path (NFS, Lustre): every shard is copied into ``local``, and no process imports an
    HTTP client (aiohttp alone took ~0.2 s of the loop thread's GIL and ~8 MB at construction)."""
    script = tmp_path / "reader.py"
    script.write_text(_SHARED_FS_READER)
    remote, cache = tmp_path / "shared", tmp_path / "cache"
    args = [str(remote), str(cache), workers, method, limit]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    seen, imported = json.loads(out.stdout.splitlines()[-1])
    assert seen == list(range(60))
    assert imported == []
    assert sorted(p.name for p in cache.glob("*.mds")), "nothing was copied from the remote"


def test_unknown_public_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        astreaming.no_such_name  # noqa: B018


def test_errors_keep_builtin_bases() -> None:
    assert issubclass(astreaming.ConfigError, ValueError)
    assert issubclass(astreaming.FormatError, ValueError)
    assert issubclass(astreaming.UnknownOptionError, KeyError)
    assert str(astreaming.UnknownOptionError("bad algo 'x'")) == "bad algo 'x'"


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "astreaming" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
