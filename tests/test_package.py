"""The package's import contract and command line."""

from __future__ import annotations

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
