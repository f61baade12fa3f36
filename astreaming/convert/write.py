"""Write the rows of some work units into one MDS dataset (a whole output, or one partition of it)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from astreaming.convert.columns import coercers
from astreaming.convert.sources import Source, Unit
from astreaming.errors import FormatError
from astreaming.output.writers import MDSWriter

__all__ = ["WriterSettings", "join_out", "partition_name", "write_units"]

_HINT = "override the encoding with --columns NAME:ENCODING, or infer from every row with --infer-rows 0"

#: Writer keyword arguments: compression, hashes, size_limit, exist_ok.
WriterSettings = Mapping[str, Any]


def _sample(
    where: str, row: Mapping[str, Any], columns: Mapping[str, str], coerce: Mapping[str, Any]
) -> dict[str, Any]:
    extra = [name for name in row if name not in columns]
    if extra:
        raise FormatError(f"{where}: column {extra[0]!r} is not among the columns {sorted(columns)}; {_HINT}")
    sample = {}
    for name, fn in coerce.items():
        if name not in row:
            raise FormatError(f"{where}: no value for column {name!r}")
        value = row[name]
        try:
            sample[name] = fn(value)
        except (ValueError, TypeError, ArithmeticError) as e:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise FormatError(
                f"{where}: column {name!r}: cannot store {shown} as {columns[name]} ({e}); {_HINT}"
            ) from None
    return sample


def write_units(
    source: Source,
    units: Sequence[Unit],
    columns: Mapping[str, str],
    out: str,
    settings: WriterSettings,
    *,
    tick: Callable[[int], None] | None = None,
    sidecars: Mapping[str, bytes] | None = None,
) -> tuple[int, int]:
    """Convert ``units`` of ``source`` into the MDS dataset ``out`` (local path or URL).

    Sidecar files are written into the output before any shard, so the index (published last) never
    precedes them. ``tick(n)`` reports progress every few rows.

    Returns:
        (samples, shards) written.

    Raises:
        FormatError: A row cannot be read or stored (naming the file and row); no index is published.
    """
    coerce = coercers(columns)
    done = pending = 0
    with MDSWriter(out=out, columns=dict(columns), progress_bar=False, **settings) as writer:
        for name, data in (sidecars or {}).items():
            path = Path(writer.local) / name
            path.write_bytes(data)
            if writer.uploader is not None:
                writer.uploader.upload(path, name)
        for unit in units:
            for where, row in source.rows(unit):
                sample = _sample(where, row, columns, coerce)
                try:
                    writer.write(sample)
                except FormatError as e:
                    raise FormatError(f"{where}: {e}; {_HINT}") from None
                done += 1
                pending += 1
                if tick is not None and pending >= 256:
                    tick(pending)
                    pending = 0
    if tick is not None and pending:
        tick(pending)
    return done, len(writer.shards)


def partition_name(k: int) -> str:
    """The sub-directory of partition ``k`` (zero-padded, so names sort in partition order)."""
    return f"part-{k:05d}"


def join_out(out: str, name: str) -> str:
    """``out/name`` for a local path or a URL."""
    if "://" in out:
        return out.rstrip("/") + "/" + name
    return os.path.join(out, name)
