"""Helpers of the CLI tests (a uniquely named module: ``conftest`` names clash across test directories)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RunCLI = Callable[..., subprocess.CompletedProcess[str]]

# ``python -m astreaming.cli.main`` runs exactly what the console script runs (tested separately).
CLI = [sys.executable, "-m", "astreaming.cli.main"]


def cli_env(tmpdir: Path) -> dict[str, str]:
    """The environment of a CLI process: temporary files under ``tmpdir``, so a test sees any leftover."""
    env = dict(os.environ)
    env["TMPDIR"] = str(tmpdir)
    return env


def leftovers(tmpdir: Path, *, resumable: bool = False) -> list[str]:
    """Files and directories a CLI process left in its TMPDIR.

    ``astreaming-control`` (epoch control) and ``astreaming-plans`` (plan artefacts) are shared by every
    dataset on the machine; only files left inside them count. ``resumable``: an interrupted epoch keeps
    its plan artefacts for a resumption on this node (they age out after ``cache.plans.STALE_AFTER``).
    """
    found = []
    plans = tmpdir / "astreaming-plans"
    for path in sorted(tmpdir.rglob("*")):
        if path in (tmpdir / "astreaming-control", plans) or (resumable and path.is_relative_to(plans)):
            continue
        found.append(str(path.relative_to(tmpdir)))
    return found


def read_local(out: Path) -> list[dict[str, Any]]:
    """Every sample of the local MDS dataset at ``out``, in order."""
    from astreaming.format.local import LocalDataset

    ds = LocalDataset(out)
    try:
        return [ds[i] for i in range(len(ds))]
    finally:
        ds.close()
