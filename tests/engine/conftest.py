"""Datasets written with astreaming's own MDSWriter for engine tests."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from astreaming import MDSWriter

MakeDataset = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """Write an MDS dataset whose int column ``id`` holds each sample's global index."""
    counter = iter(range(1_000_000))

    def make(
        num_samples: int = 100,
        *,
        size_limit: int | str = 600,
        compression: str | None = None,
        hashes: list[str] | None = None,
        first_id: int = 0,
        name: str | None = None,
    ) -> Path:
        out = tmp_path / (name or f"remote{next(counter)}")
        with MDSWriter(
            out=str(out),
            columns={"id": "int", "pad": "str"},
            compression=compression,
            hashes=hashes,
            size_limit=size_limit,
        ) as writer:
            for i in range(num_samples):
                writer.write({"id": first_id + i, "pad": "x" * (i % 17)})
        return out

    return make


# The golden datasets in the session's fake object stores (servers from tests/conftest.py).
from .remotes import golden_remote  # noqa: E402, F401


@pytest.fixture
def plans_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Plan artefacts of this test in its own directory (the workers inherit it through the env)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # spawned workers
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # this process and forked workers
    return temp / "astreaming-plans"
