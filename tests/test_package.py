"""The package's import contract and command line."""

from __future__ import annotations

import subprocess
import sys

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
