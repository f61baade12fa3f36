"""The ``astreaming`` entry point: help, version, usage errors, console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_helpers import RunCLI

from astreaming import __version__


def test_help_lists_every_subcommand(run_cli: RunCLI) -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "inspect", "merge", "convert", "verify", "plan"):
        assert command in proc.stdout
    assert proc.stdout.startswith("usage: astreaming")


def test_no_command_prints_help(run_cli: RunCLI) -> None:
    proc = run_cli()
    assert proc.returncode == 0
    assert "usage: astreaming" in proc.stdout
    assert "inspect" in proc.stdout


def test_version(run_cli: RunCLI) -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"astreaming {__version__}"


def test_subcommand_help(run_cli: RunCLI) -> None:
    for command, option in (
        ("demo", "--bandwidth"),
        ("inspect", "--json"),
        ("merge", "--local"),
        ("convert", "--columns"),
        ("verify", "--decode-all"),
        ("plan", "--shuffle-block-size"),
    ):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert option in proc.stdout
        # Help is plain text: the docstrings' reStructuredText quoting must not leak into it.
        assert "``" not in proc.stdout and "`" not in proc.stdout


def test_unknown_command_is_a_usage_error(run_cli: RunCLI) -> None:
    proc = run_cli("frobnicate")
    assert proc.returncode == 2
    assert "frobnicate" in proc.stderr


def test_console_script_is_installed() -> None:
    # The README's first command is `astreaming demo`: the script must sit next to this interpreter.
    script = Path(sys.executable).parent / "astreaming"
    assert script.exists(), f"console script missing: {script}"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    assert "demo" in proc.stdout
