"""Fixtures of the CLI tests: run ``astreaming`` as a separate process, as a user would."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from cli_helpers import CLI, RunCLI, cli_env
from cli_remotes import Azurite, azurite_fixture


@pytest.fixture
def cli_tmp(tmp_path: Path) -> Path:
    """The TMPDIR of the CLI processes of one test."""
    path = tmp_path / "cli-tmp"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(cli_tmp: Path) -> RunCLI:
    """Run ``astreaming ARGS...``; returns the finished process (stdout and stderr as text).

    ``env`` adds environment variables (endpoints, credentials) to the process's environment.
    """

    def run(
        *args: str | os.PathLike[str], timeout: float = 120.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [*CLI, *(os.fspath(a) for a in args)]
        full_env = {**cli_env(cli_tmp), **(env or {})}
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
        )

    return run


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite for the CLI tests (skips, printing why, only where node/npm cannot run it)."""
    yield from azurite_fixture()
