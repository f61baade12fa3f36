"""Helpers of the CLI tests (a uniquely named module: ``conftest`` names clash across test directories)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

RunCLI = Callable[..., subprocess.CompletedProcess[str]]

# ``python -m astreaming.cli.main`` runs exactly what the console script runs (tested separately).
CLI = [sys.executable, "-m", "astreaming.cli.main"]


def cli_env(tmpdir: Path) -> dict[str, str]:
    """The environment of a CLI process: temporary files under ``tmpdir``, so a test sees any leftover."""
    env = dict(os.environ)
    env["TMPDIR"] = str(tmpdir)
    return env


def leftovers(tmpdir: Path) -> list[str]:
    """Files and directories a CLI process left in its TMPDIR.

    ``astreaming-control`` is the dataset's epoch-control directory, shared by every dataset on the
    machine; only files left inside it count.
    """
    found = []
    for path in sorted(tmpdir.rglob("*")):
        if path == tmpdir / "astreaming-control":
            continue
        found.append(str(path.relative_to(tmpdir)))
    return found
