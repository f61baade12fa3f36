"""``dataframe_to_mds``: write a Spark DataFrame as MDS, one partition per Spark task, then merge.

The signature and type mapping are mosaicml-streaming's (reference §7.1): byte -> uint8, short -> uint16,
int -> int32, long -> int64, float -> float32, double -> float64, decimal -> str_decimal, string -> str,
binary -> bytes, array<short|int|long|float|double> -> ndarray:<int16|int32|int64|float32|float64>;
booleans, dates, timestamps and other types need explicit ``columns``. Compression defaults to zstd.

Each task attempt writes its partition with astreaming's uploading ``MDSWriter`` into a directory of its
own, ``out/<partition>-<run>-<attempt>`` (the partition zero-padded, so partitions sort in DataFrame
order), local or remote; the driver then merges the partition indexes of the attempts Spark accepted into
``out/index.json``. The writer contract holds: a failed task publishes no partition index and the driver
no root index; an existing output is replaced only with ``exist_ok`` (a remote root loses its index.json
and the partition directories of earlier calls, other objects stay).

Why a directory per attempt and per call: when a job fails, Spark marks its other tasks killed, but a
Python worker that was busy (importing pandas, inside a udf) is not stopped until it next touches its
socket. Such a task of a failed call can run on while the user's rerun writes the same partition; with
one directory per partition it emptied the rerun's directory (CI saw ``00002/index.json`` vanish after
the rerun published it) or overwrote its shards. A task never empties or reuses a directory now, so a
stale attempt can only leave a directory of its own that no index references. (mosaic, too, gives each
attempt its own directory, named by the task attempt id; the partition number first keeps them sorted.)
``pyspark`` (4.x, with pandas and pyarrow) is needed only to call this function.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from astreaming._units import bytes_to_int
from astreaming.convert.columns import coercers
from astreaming.convert.run import prepare_root
from astreaming.convert.write import join_out
from astreaming.errors import AstreamingError, ConfigError, ObjectNotFound
from astreaming.fetch.loop_thread import get_loop_thread
from astreaming.format.compression import get_compression
from astreaming.format.hashing import validate_hashes
from astreaming.format.mds.encodings import get_encoding
from astreaming.format.outdir import check_output
from astreaming.format.writer import is_remote_out
from astreaming.output.merge import merge_index as merge_partitions
from astreaming.output.writers import MDSWriter
from astreaming.storage import backend_for

__all__ = ["SparkTaskError", "dataframe_to_mds", "spark_columns"]

_SCALARS = {
    "ByteType": "uint8",
    "ShortType": "uint16",
    "IntegerType": "int32",
    "LongType": "int64",
    "FloatType": "float32",
    "DoubleType": "float64",
    "DecimalType": "str_decimal",
    "StringType": "str",
    "BinaryType": "bytes",
}
_ARRAYS = {
    "ShortType": "ndarray:int16",
    "IntegerType": "ndarray:int32",
    "LongType": "ndarray:int64",
    "FloatType": "ndarray:float32",
    "DoubleType": "ndarray:float64",
}


class SparkTaskError(AstreamingError):
    """A Spark task failed while writing its partition; no root ``index.json`` was published."""


def spark_columns(schema: Any) -> dict[str, str]:
    """MDS encodings of a Spark ``StructType`` (mosaic's mapping).

    Raises:
        ConfigError: A field of a type the mapping does not cover (naming it); pass ``columns``.
    """
    out = {}
    for field in schema.fields:
        kind = type(field.dataType).__name__
        if kind == "ArrayType":
            inner = type(field.dataType.elementType).__name__
            spec = _ARRAYS.get(inner)
        else:
            spec = _SCALARS.get(kind)
        if spec is None:
            raise ConfigError(
                f"dataframe_to_mds: column {field.name!r} has Spark type {field.dataType.simpleString()}, "
                "which has no MDS encoding; give mds_kwargs['columns'] (and convert the column)"
            )
        out[field.name] = spec
    return out


def _split_out(out: Any) -> tuple[str | None, str | None]:
    if isinstance(out, tuple) and len(out) == 2:
        return os.fspath(out[0]), str(out[1])
    if isinstance(out, (str, os.PathLike)):
        text = os.fspath(out)
        return (None, text) if "://" in text and not text.startswith("file://") else (text, None)
    raise ConfigError(f"mds_kwargs['out']: expected a path, a URL or a (local, remote) tuple, got {out!r}")


def _partition_out(out: Any, name: str) -> Any:
    if isinstance(out, tuple):
        return (join_out(os.fspath(out[0]), name), join_out(str(out[1]), name))
    return join_out(os.fspath(out), name)


def _task(
    columns: dict[str, str],
    out: Any,
    writer_kwargs: dict[str, Any],
    udf_iterable: Callable[..., Iterable[Mapping[str, Any]]] | None,
    udf_kwargs: dict[str, Any],
    run: str,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInPandas`` function: write this attempt's rows into ``out/<partition>-<run>-<attempt>``."""

    def write(frames: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        attempt = context.attemptNumber() if context is not None else 0
        name = f"{partition:05d}-{run}-{attempt}"
        coerce = coercers(columns)
        samples = 0
        # Not exist_ok: the name is this attempt's alone, so an existing directory means a bug, and a task
        # must never empty a directory another attempt (or call) may be writing or may have published.
        with MDSWriter(out=_partition_out(out, name), columns=columns, **writer_kwargs, exist_ok=False) as w:
            for frame in frames:
                rows = udf_iterable(frame, **udf_kwargs) if udf_iterable else frame.to_dict("records")
                for row in rows:
                    w.write({k: coerce[k](row[k]) if k in coerce else row[k] for k in columns})
                    samples += 1
        yield pd.DataFrame({"partition": [partition], "name": [name], "samples": [samples]})

    return write


def _check_writer_args(columns: Mapping[str, str], kwargs: Mapping[str, Any]) -> None:
    """Fail on the driver, before any task starts or the output is touched."""
    for name, spec in columns.items():
        try:
            get_encoding(spec)
        except AstreamingError as e:
            raise ConfigError(f"mds_kwargs['columns']: column {name!r}: {e}") from None
    get_compression(kwargs.get("compression"))
    validate_hashes(kwargs.get("hashes"))
    if kwargs.get("size_limit") is not None:
        bytes_to_int(kwargs["size_limit"], name="size_limit")


def dataframe_to_mds(
    dataframe: Any,
    merge_index: bool = True,
    mds_kwargs: Mapping[str, Any] | None = None,
    udf_iterable: Callable[..., Iterable[Mapping[str, Any]]] | None = None,
    udf_kwargs: Mapping[str, Any] | None = None,
) -> tuple[str | None, str | None]:
    """Write ``dataframe`` as an MDS dataset, one partition per Spark task (mosaic's signature).

    Args:
        dataframe: A ``pyspark.sql.DataFrame``.
        merge_index: Merge the partition indexes into ``out/index.json`` (else only partitions exist).
        mds_kwargs: ``MDSWriter`` arguments: ``out`` (required; local path, URL or ``(local, remote)``),
            ``columns`` (default: from the schema), ``compression`` (default ``"zstd"``), ``hashes``,
            ``size_limit``, ``keep_local``, ``exist_ok`` and the upload options.
        udf_iterable: Called as ``udf_iterable(pandas_frame, **udf_kwargs)`` for each batch of a
            partition; returns the sample dicts to write. Requires ``columns``.
        udf_kwargs: Keyword arguments of ``udf_iterable``.

    Returns:
        ``(local, remote)`` of the output (``None`` for the side not given).

    Raises:
        ConfigError: Missing ``out``, a column type without mapping, a udf without ``columns``, an
            existing output without ``exist_ok``.
        SparkTaskError: A task failed (its cause attached); no root index was published.
    """
    kwargs = dict(mds_kwargs or {})
    if "out" not in kwargs:
        raise ConfigError("dataframe_to_mds: mds_kwargs['out'] is required")
    out = kwargs.pop("out")
    columns = kwargs.pop("columns", None)
    if columns is None:
        if udf_iterable is not None:
            raise ConfigError("dataframe_to_mds: with udf_iterable, give mds_kwargs['columns']")
        columns = spark_columns(dataframe.schema)
    kwargs.setdefault("compression", "zstd")
    exist_ok = bool(kwargs.pop("exist_ok", False))
    local, remote = _split_out(out)
    _check_writer_args(columns, kwargs)
    if local is not None and remote is not None:
        # Before the remote, whose index exist_ok=True deletes: see astreaming.output.writers.
        check_output(
            Path(local[len("file://") :] if local.startswith("file://") else local), exist_ok=exist_ok
        )
    with contextlib.ExitStack() as claims:
        for target in (remote, local):
            if target is not None:
                claims.enter_context(prepare_root(target, exist_ok, {}))
        if exist_ok and remote is not None:
            # A remote root lost its indexes only. The partitions of earlier calls carry other names
            # than this call's, so nothing would overwrite them: delete them.
            _remove_partitions(remote, lambda name: True)
        # The roots stay claimed until the merge: no other writer or conversion can empty or share them.
        _write_and_merge(dataframe, columns, out, kwargs, udf_iterable, udf_kwargs, merge_index)
    return local, remote


def _write_and_merge(
    dataframe: Any,
    columns: Mapping[str, str],
    out: Any,
    kwargs: dict[str, Any],
    udf_iterable: Callable[..., Iterable[Mapping[str, Any]]] | None,
    udf_kwargs: Mapping[str, Any] | None,
    merge_index: bool,
) -> None:
    """Run the tasks, remove this call's unaccepted attempts, and merge the accepted partitions."""
    local, remote = _split_out(out)
    # A token of this call in every partition name: see the module docstring.
    run = uuid.uuid4().hex[:8]
    task = _task(dict(columns), out, kwargs, udf_iterable, dict(udf_kwargs or {}), run)
    try:
        results = dataframe.mapInPandas(task, schema="partition long, name string, samples long").collect()
    except Exception as e:
        raise SparkTaskError(
            f"dataframe_to_mds: a Spark task failed; no index.json was published in {out!r}: {e}"
        ) from e
    names = [row["name"] for row in sorted(results, key=lambda r: r["partition"])]
    # Attempts Spark retried or ran speculatively: never referenced by the index, so they go.
    unaccepted = re.compile(rf"\d{{5,}}-{run}-\d+")
    for target in (local, remote):
        if target is not None:
            _remove_partitions(target, lambda name: bool(unaccepted.fullmatch(name)) and name not in names)
    if merge_index and names:
        parts = [_partition_out(out, name) for name in names]
        merge_partitions(parts, out)


#: The directory names ``dataframe_to_mds`` gives partitions: ``<partition>-<call>-<attempt>``.
_PARTITION = re.compile(r"\d{5,}-[0-9a-f]{8}-\d+")


def _remove_partitions(root: str, doomed: Callable[[str], bool]) -> None:
    """Delete the partition directories directly under ``root`` whose name ``doomed`` accepts.

    Best effort: an attempt Spark could not stop may still be writing, and whatever it leaves is never
    referenced by an index. Local directories go with ``rmtree``; remote ones object by object.
    """
    if is_remote_out(root):
        get_loop_thread().call(_remove_remote_partitions(root, doomed))
        return
    base = Path(root[len("file://") :] if root.startswith("file://") else root)
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            if entry.is_dir() and _PARTITION.fullmatch(entry.name) and doomed(entry.name):
                shutil.rmtree(entry, ignore_errors=True)


async def _remove_remote_partitions(root: str, doomed: Callable[[str], bool]) -> None:
    prefix = root.rstrip("/") + "/"
    async with backend_for(prefix, timeout=60.0) as backend:
        urls = [info.url async for info in backend.list(prefix)]
        for url in urls:
            name = url[len(prefix) :].split("/", 1)[0]
            if _PARTITION.fullmatch(name) and doomed(name):
                with contextlib.suppress(ObjectNotFound):
                    await backend.delete(url)
