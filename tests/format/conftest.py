"""Fixtures for the format tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from astreaming.format.jsonl import JSONWriter
from astreaming.format.mds.writer import MDSWriter
from astreaming.format.xsv import CSVWriter, TSVWriter, XSVWriter

WRITERS: dict[str, type[Any]] = {
    "MDSWriter": MDSWriter,
    "JSONWriter": JSONWriter,
    "CSVWriter": CSVWriter,
    "TSVWriter": TSVWriter,
    "XSVWriter": XSVWriter,
}

WriteFn = Callable[..., Path]


@pytest.fixture
def write_mds(tmp_path: Path) -> WriteFn:
    """Write ``samples`` with an MDSWriter into a fresh directory under tmp_path; return it."""
    counter = iter(range(1_000_000))

    def write(columns: Mapping[str, str], samples: Iterable[Mapping[str, Any]], **kwargs: Any) -> Path:
        out = tmp_path / f"ds{next(counter)}"
        with MDSWriter(out=str(out), columns=columns, **kwargs) as writer:
            for sample in samples:
                writer.write(sample)
        return out

    return write
