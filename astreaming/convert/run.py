"""Run a conversion: in this process (``workers=1``), or in worker processes that each write a partition
(``OUT/part-NNNNN``) before ``merge_index`` joins them into ``OUT/index.json``.

Partitions are contiguous runs of the source's units, so the merged dataset holds the rows in source
order whatever the number of workers. A failed worker stops the others and no ``OUT/index.json`` is
written. Workers are started with ``spawn``: the parent may already run the astreaming loop thread
(remote output), which a forked child must not inherit.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from astreaming._units import bytes_to_int
from astreaming.convert.sources import Source, Unit, open_source, split_units
from astreaming.convert.write import join_out, partition_name, write_units
from astreaming.errors import AstreamingError, ConfigError, FormatError
from astreaming.format.compression import get_compression
from astreaming.format.hashing import validate_hashes
from astreaming.format.outdir import claim_output
from astreaming.format.writer import is_remote_out
from astreaming.output.merge import merge_index
from astreaming.output.transfer import upload
from astreaming.output.uploader import RemoteUploader

__all__ = ["ConvertOptions", "ConvertResult", "convert", "prepare_root"]


@dataclass(frozen=True)
class ConvertOptions:
    """Settings of :func:`convert`.

    Attributes:
        columns: Encodings that override the inferred ones (``{"label": "int32"}``).
        kind: Source format (``jsonl``, ``csv``, ``tsv``, ``parquet``, ``imagefolder``); None = detect.
        compression, hashes, size_limit: As the ``MDSWriter`` arguments.
        workers: Processes; each writes one partition, then the partitions are merged.
        exist_ok: Replace an existing output (else a non-empty ``out`` is refused).
        infer_rows: Rows read to infer the columns (0 = every row).
        progress: Show a progress bar (None: when stderr is a terminal).
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    kind: str | None = None
    compression: str | None = None
    hashes: Sequence[str] = ()
    size_limit: int | str | None = 1 << 26
    workers: int = 1
    exist_ok: bool = False
    infer_rows: int = 1000
    progress: bool | None = None


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` wrote: the columns, samples, shards and partitions (1 = no merge)."""

    out: str
    kind: str
    columns: dict[str, str]
    samples: int
    shards: int
    partitions: int


def resolve_columns(source: Source, overrides: Mapping[str, str], infer_rows: int) -> dict[str, str]:
    """The inferred columns with ``overrides`` applied.

    Raises:
        ConfigError: An override names a column the source does not have.
    """
    columns = source.infer(infer_rows, overrides)
    for name, spec in overrides.items():
        if name not in columns and not source.open_schema:
            raise ConfigError(
                f"--columns: the source has no column {name!r} (its columns: {sorted(columns)})"
            )
        columns[name] = spec
    if not columns:
        raise FormatError("convert: the source has no rows to infer columns from")
    return columns


def _check_settings(options: ConvertOptions) -> None:
    get_compression(options.compression)
    validate_hashes(list(options.hashes))
    if options.size_limit is not None:
        bytes_to_int(options.size_limit, name="size_limit")
    if options.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {options.workers}")
    if options.infer_rows < 0:
        raise ConfigError(f"--infer-rows: must be >= 0, got {options.infer_rows}")


def convert(src: str | os.PathLike[str], out: str, options: ConvertOptions | None = None) -> ConvertResult:
    """Convert the source at ``src`` into the MDS dataset ``out`` (a local directory or any remote URL).

    Raises:
        ObjectNotFound: ``src`` does not exist.
        ConfigError: Bad settings, an unknown column, an output that exists without ``exist_ok``.
        FormatError: An unreadable row or a value its column cannot store (naming file and row).
        StorageError: An upload failed; no index was published.
    """
    options = options or ConvertOptions()
    _check_settings(options)
    source = open_source(os.fspath(src), options.kind)
    try:
        return _convert(source, out, options)
    finally:
        source.close()


def _convert(source: Source, out: str, options: ConvertOptions) -> ConvertResult:
    columns = resolve_columns(source, options.columns, options.infer_rows)
    settings = {
        "compression": options.compression,
        "hashes": list(options.hashes),
        "size_limit": options.size_limit,
        "exist_ok": options.exist_ok,
    }
    units = source.units(None)
    if options.workers > 1:
        # Enough units to keep every worker busy, none larger than the source's cap (64 MB of text).
        total = sum(u.weight for u in units)
        units = source.units(max(1, min(source.unit_cap, -(-total // options.workers))))
    groups = split_units(units, options.workers) if options.workers > 1 else [units]
    show = options.progress if options.progress is not None else _stderr_is_tty()
    with tqdm(total=source.total(), unit=" rows", disable=not show, desc="converting") as bar:
        if len(groups) <= 1:

            def tick(n: int) -> None:
                bar.update(n)

            samples, shards = write_units(
                source, units, columns, out, settings, tick=tick, sidecars=source.sidecars()
            )
        else:
            samples, shards = _convert_parallel(source, groups, columns, out, settings, options, bar.update)
    return ConvertResult(out, source.kind, columns, samples, shards, max(len(groups), 1))


def _stderr_is_tty() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False


def prepare_root(
    out: str, exist_ok: bool, sidecars: Mapping[str, bytes]
) -> contextlib.AbstractContextManager[Any]:
    """Check (or empty) the output root, and put the sidecar files in it, before the workers start.

    Returns:
        The claim on a local root, held until it is released (use it as a context manager): while the
        workers write their partitions, another conversion or writer cannot empty or share the root.
    """
    if is_remote_out(out):
        with tempfile.TemporaryDirectory(prefix="astreaming-convert-") as tmp:
            checker = RemoteUploader(out, Path(tmp))
            try:
                checker.prepare(exist_ok=exist_ok)  # exist_ok: unpublishes OUT/index.json first
            finally:
                checker.abort()
            for name, data in sidecars.items():
                path = Path(tmp) / name
                path.write_bytes(data)
                upload(path, join_out(out, name))
        return contextlib.nullcontext()
    root = Path(out[len("file://") :] if out.startswith("file://") else out)
    claim = claim_output(root, exist_ok=exist_ok, hint="pass --overwrite (exist_ok=True) to replace it")
    try:
        for name, data in sidecars.items():
            (root / name).write_bytes(data)
    except BaseException:
        claim.release()
        raise
    return claim


def _convert_parallel(
    source: Source,
    groups: list[list[Unit]],
    columns: Mapping[str, str],
    out: str,
    settings: Mapping[str, Any],
    options: ConvertOptions,
    tick: Callable[[int], object],
) -> tuple[int, int]:
    with prepare_root(out, options.exist_ok, source.sidecars()):
        parts = [join_out(out, partition_name(k)) for k in range(len(groups))]
        results = _run_workers(source, groups, columns, parts, settings, tick)
        merge_index(parts, out)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def _worker(
    conn: multiprocessing.connection.Connection,
    source: Source,
    units: list[Unit],
    columns: dict[str, str],
    out: str,
    settings: dict[str, Any],
) -> None:
    """Body of a worker process: convert its units into ``out``; report progress and the result."""
    try:
        result = write_units(source, units, columns, out, settings, tick=lambda n: conn.send(("tick", n)))
    except BaseException as e:  # reported to the parent, which raises it
        try:
            conn.send(("error", e))
        except Exception:  # not picklable: keep its type's name and message
            conn.send(("error", FormatError(f"{type(e).__name__}: {e}")))
    else:
        conn.send(("done", result))
    finally:
        source.close()
        conn.close()


def _run_workers(
    source: Source,
    groups: list[list[Unit]],
    columns: Mapping[str, str],
    parts: list[str],
    settings: Mapping[str, Any],
    tick: Callable[[int], object],
) -> list[tuple[int, int]]:
    ctx = multiprocessing.get_context("spawn")
    procs, conns = [], []
    for k, units in enumerate(groups):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker,
            args=(child, source, units, dict(columns), parts[k], {**settings, "exist_ok": True}),
            name=f"astreaming-convert-{k}",
        )
        proc.start()
        child.close()
        procs.append(proc)
        conns.append(parent)
    results: dict[int, tuple[int, int]] = {}
    try:
        open_conns = dict(enumerate(conns))
        while open_conns:
            for ready in multiprocessing.connection.wait(list(open_conns.values())):
                k = next(i for i, c in open_conns.items() if c is ready)
                try:
                    kind, payload = open_conns[k].recv()
                except EOFError:
                    del open_conns[k]
                    if k not in results:
                        procs[k].join()
                        raise AstreamingError(
                            f"convert: worker {k} ({parts[k]}) died (exit code {procs[k].exitcode})"
                        ) from None
                    continue
                if kind == "tick":
                    tick(payload)
                elif kind == "done":
                    results[k] = (int(payload[0]), int(payload[1]))
                else:
                    assert isinstance(payload, BaseException)
                    raise payload
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # a sibling failed (or Ctrl-C): its partition stays unpublished
            proc.join()
        for conn in conns:
            conn.close()
    return [results[k] for k in range(len(groups))]
