"""``astreaming convert`` never empties or shares an output that another writer or conversion is writing.

The relative of the Spark defect (a task of a failed call emptied the rerun's partition): partitions are
``OUT/part-NNNNN`` in every run, and each worker used to empty its partition with ``exist_ok``, as the
parent emptied ``OUT``. A writer in this test process stands in for the other process: a conversion
running at the same time, or a worker of a killed conversion that is still writing its partition.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import RunCLI, read_local
from convert_sources import jsonl_rows, write_jsonl

from astreaming.output import MDSWriter


def _busy_writer(out: Path) -> MDSWriter:
    """A writer with shards on disk and more to come."""
    writer = MDSWriter(out=str(out), columns={"x": "int"}, size_limit=64)
    for i in range(20):
        writer.write({"x": 1000 + i})
    assert len(writer.shards) >= 2
    return writer


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_output_being_written_is_refused_even_with_overwrite(
    run_cli: RunCLI, tmp_path: Path, workers: str
) -> None:
    src = write_jsonl(tmp_path / "rows.jsonl", jsonl_rows(50))
    out = tmp_path / "out"
    other = _busy_writer(out)
    proc = run_cli("convert", src, out, "--workers", workers, "--overwrite")
    assert proc.returncode == 1, proc.stdout
    assert f"{out} is being written by another writer or conversion" in proc.stderr
    other.write({"x": 1020})
    other.finish()
    assert [r["x"] for r in read_local(out)] == list(range(1000, 1021))


def test_a_partition_still_being_written_by_an_earlier_run_is_not_emptied(
    run_cli: RunCLI, tmp_path: Path
) -> None:
    rows = jsonl_rows(300)
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    orphan = _busy_writer(out / "part-00000")  # a worker of a killed run, still writing
    proc = run_cli("convert", src, out, "--workers", "2", "--overwrite", "--size-limit", "2kb")
    assert proc.returncode == 1, proc.stdout
    assert f"{out / 'part-00000'} is being written by another writer or conversion" in proc.stderr
    assert not (out / "index.json").exists()
    orphan.finish()  # nothing was deleted under it
    assert [r["x"] for r in read_local(out / "part-00000")] == list(range(1000, 1020))
    # Once it is gone, the rerun replaces everything.
    rerun = run_cli("convert", src, out, "--workers", "2", "--overwrite", "--size-limit", "2kb")
    assert rerun.returncode == 0, rerun.stderr
    assert read_local(out) == rows
