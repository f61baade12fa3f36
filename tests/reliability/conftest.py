"""Datasets for the reliability suites: small MDS datasets whose ``id`` column is the sample index."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from astreaming import MDSWriter

MakeDataset = Callable[..., Path]


def write_dataset(
    out: Path,
    num_samples: int = 60,
    *,
    size_limit: int = 300,
    compression: str | None = None,
    hashes: list[str] | None = None,
) -> Path:
    """An MDS dataset of ``num_samples`` samples ``{"id": i, "pad": "x" * (i % 7)}`` in ``out``."""
    with MDSWriter(
        out=str(out),
        columns={"id": "int", "pad": "str"},
        compression=compression,
        hashes=hashes,
        size_limit=size_limit,
    ) as writer:
        for i in range(num_samples):
            writer.write({"id": i, "pad": "x" * (i % 7)})
    return out


def read_index(root: Path) -> dict[str, Any]:
    """The parsed ``index.json`` of a dataset directory."""
    index: dict[str, Any] = json.loads((root / "index.json").read_text())
    return index


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """Write a fresh dataset under ``tmp_path`` (see :func:`write_dataset`)."""
    counter = iter(range(1_000_000))

    def make(num_samples: int = 60, **kwargs: Any) -> Path:
        return write_dataset(tmp_path / f"ds{next(counter)}", num_samples, **kwargs)

    return make
