"""What every conversion source provides: work units, rows with their location, inferred columns."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from astreaming.convert.fs import SourceFS

__all__ = ["Row", "Source", "Unit", "split_units"]

#: A row and where it came from (``data.jsonl:17``), for error messages.
Row = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Unit:
    """A piece of the source one worker converts whole, in order.

    Attributes:
        path: The file (or the root directory for an image folder).
        start: First byte (text files), row group (Parquet) or file number (image folder).
        stop: End, exclusive, in the same unit; ``-1`` for the end of the file.
        weight: Relative cost (bytes or rows), to balance the workers.
        line: The line number ``start`` is on, where the source counts lines (CSV), for messages.
    """

    path: str
    start: int = 0
    stop: int = -1
    weight: int = 1
    line: int = 1


class Source(ABC):
    """A dataset to convert; picklable (worker processes get a copy)."""

    kind: ClassVar[str]
    #: Whether rows may hold columns the inference did not see (JSONL): then --columns may add some.
    open_schema: ClassVar[bool] = False

    #: The largest unit weight worth having when splitting for workers (bytes, files, ...).
    unit_cap: ClassVar[int] = 1

    #: Where the files are (local, or a storage URL read by range requests).
    fs: SourceFS = SourceFS()

    def close(self) -> None:
        """Close the storage client of a remote source (a source reopens it when used again)."""
        self.fs.close()

    @abstractmethod
    def units(self, max_weight: int | None) -> list[Unit]:
        """The work units in source order; units heavier than ``max_weight`` are split where possible."""

    @abstractmethod
    def rows(self, unit: Unit) -> Iterator[Row]:
        """The rows of ``unit``, in order.

        Raises:
            FormatError: An unreadable row (naming the file and row).
        """

    @abstractmethod
    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        """Column encodings inferred from the first ``limit`` rows (0 = every row).

        ``given`` holds the encodings the user chose; a source need not infer those.
        """

    def total(self) -> int | None:
        """The number of rows, if known without reading the data (for the progress bar)."""
        return None

    def sidecars(self) -> dict[str, bytes]:
        """Extra files written next to ``index.json`` (name -> bytes), e.g. an image folder's classes."""
        return {}

    def head(self, limit: int) -> Iterator[dict[str, Any]]:
        """The first ``limit`` rows (0 = all), for inference."""
        rows = (row for unit in self.units(None) for _, row in self.rows(unit))
        return iter(rows) if limit <= 0 else itertools.islice(rows, limit)


def split_units(units: Sequence[Unit], parts: int) -> list[list[Unit]]:
    """Contiguous groups of ``units`` of about equal weight (at most ``parts``, none empty).

    Contiguity keeps the dataset's sample order equal to the source order once the partitions are merged.
    """
    total = sum(max(u.weight, 1) for u in units)
    groups: list[list[Unit]] = []
    current: list[Unit] = []
    done = 0
    for unit in units:
        current.append(unit)
        done += max(unit.weight, 1)
        # Close the group once it reaches its share of the total (the last group takes the rest).
        if len(groups) < parts - 1 and done * parts >= total * (len(groups) + 1):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups
