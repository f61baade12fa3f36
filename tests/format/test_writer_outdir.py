"""The local output directory: what ``exist_ok=True`` may delete, and one writer at a time.

mosaic's ``exist_ok=True`` ran ``rmtree`` on whatever ``out`` named (a user's files, the working directory)
and nothing stopped a second writer from emptying or interleaving with the first one's shards.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from astreaming.format import outdir
from astreaming.format.local import LocalDataset
from astreaming.format.mds.writer import MDSWriter
from astreaming.format.writer import OutputExistsError, OutputInUseError

COLS = {"x": "int", "s": "str"}


def _write(out: Path | str, n: int, **kwargs: object) -> None:
    with MDSWriter(out=str(out), columns=COLS, size_limit=64, **kwargs) as w:  # type: ignore[arg-type]
        for i in range(n):
            w.write({"x": i, "s": f"sample {i}"})


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _xs(out: Path) -> list[int]:
    ds = LocalDataset(out)
    try:
        return [int(ds[i]["x"]) for i in range(len(ds))]
    finally:
        ds.close()


def test_exist_ok_replaces_a_previous_output_with_its_partitions(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out / "part-00000", 5)
    _write(out / "part-00001", 5)
    _write(out, 3, exist_ok=True)  # nothing but index.json, shards and partitions: replaced whole
    assert not [p for p in out.iterdir() if p.is_dir()]
    assert _xs(out) == [0, 1, 2]


@pytest.mark.parametrize("foreign", ["notes.txt", "cache/ledger.sqlite", ".git/HEAD"])
def test_exist_ok_refuses_a_directory_holding_other_files_and_deletes_nothing(
    tmp_path: Path, foreign: str
) -> None:
    out = tmp_path / "out"
    _write(out, 3)
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_text("the user's, not ours")
    before = _tree(out)
    with pytest.raises(OutputExistsError, match="not part of a previous output") as info:
        _write(out, 1, exist_ok=True)
    assert str(out / foreign.split("/")[0]) in str(info.value)
    assert _tree(out) == before


def test_exist_ok_on_the_working_directory_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    _write(out, 3)
    monkeypatch.chdir(out)
    inode = os.stat(".").st_ino
    _write(".", 2, exist_ok=True)
    # The directory itself was emptied, not removed: the process still stands in it.
    assert os.stat(".").st_ino == inode == os.stat(out).st_ino
    assert _xs(Path(".")) == [0, 1]


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = MDSWriter(out=str(out), columns=COLS, size_limit=64)
    for i in range(6):
        first.write({"x": i, "s": f"sample {i}"})
    assert len(first.shards) >= 2  # shards on disk that a second writer could empty or overwrite
    for exist_ok in (True, False):
        with pytest.raises(OutputInUseError, match="being written by another writer") as info:
            MDSWriter(out=str(out), columns=COLS, exist_ok=exist_ok)
        assert str(out) in str(info.value)
    first.finish()
    assert _xs(out) == list(range(6))
    _write(out, 2, exist_ok=True)  # finish() let the directory go
    assert _xs(out) == [0, 1]


def test_an_abandoned_or_refused_writer_lets_the_directory_go(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), MDSWriter(out=str(out), columns=COLS, size_limit=64) as w:
        for i in range(4):
            w.write({"x": i, "s": "a"})
        raise RuntimeError("boom")
    with pytest.raises(OutputExistsError, match="not empty"):
        MDSWriter(out=str(out), columns=COLS)
    _write(out, 1, exist_ok=True)
    assert _xs(out) == [0]


def test_exist_ok_leaves_a_partition_another_writer_holds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out / "part-00001", 2)
    # Still being written (by a task of an earlier run that nobody stopped, say).
    busy = MDSWriter(out=str(out / "part-00000"), columns=COLS, size_limit=64)
    for i in range(4):
        busy.write({"x": 100 + i, "s": "busy"})
    _write(out, 1, exist_ok=True)
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["part-00000"]
    busy.finish()  # its files were not deleted under it
    assert _xs(out / "part-00000") == [100, 101, 102, 103]
    assert _xs(out) == [0]


def test_exist_ok_refuses_the_parent_of_a_cache(tmp_path: Path) -> None:
    from astreaming import StreamingDataset

    _write(tmp_path / "ds", 4)
    out = tmp_path / "out"
    _write(out, 3)
    # A cache holds index.json and shards too; it is still not a partition of this output.
    ds = StreamingDataset(remote=str(tmp_path / "ds"), local=str(out / "cache"), shuffle=False, batch_size=1)
    assert [int(s["x"]) for s in ds] == [0, 1, 2, 3]
    before = _tree(out)
    with pytest.raises(OutputExistsError, match="not part of a previous output") as info:
        _write(out, 1, exist_ok=True)
    assert str(out / "cache") in str(info.value)
    assert _tree(out) == before


def test_exist_ok_replaces_partitions_its_index_references(tmp_path: Path) -> None:
    from astreaming.format.merge import merge_index

    out = tmp_path / "out"
    _write(out / "train-a", 2)
    _write(out / "train-b", 2)
    merge_index([str(out / "train-a"), str(out / "train-b")], str(out))
    assert _xs(out) == [0, 1, 0, 1]
    _write(out, 1, exist_ok=True)
    assert not [p for p in out.iterdir() if p.is_dir()]
    assert _xs(out) == [0]


def test_a_forked_child_does_not_keep_the_directory_held(tmp_path: Path) -> None:
    """A process forked while a writer is open (DataLoader workers, say) shares its locked descriptor:
    finish() must still let the directory go, and the child's exit must not release a later claim."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = tmp_path / "out"
    writer = MDSWriter(out=str(out), columns=COLS)
    writer.write({"x": 1, "s": "a"})
    stop = ctx.Event()
    child = ctx.Process(target=stop.wait)
    child.start()
    try:
        writer.finish()
        second = MDSWriter(out=str(out), columns=COLS, exist_ok=True)  # held by the child before the fix
    finally:
        stop.set()
        child.join()
    with pytest.raises(OutputInUseError):
        MDSWriter(out=str(out), columns=COLS, exist_ok=True)  # the child's exit released nothing
    second.write({"x": 2, "s": "b"})
    second.finish()
    assert _xs(out) == [2]


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_filesystem_without_flock_is_written_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # Lustre without -o flock answers ENOSYS, some NFS setups ENOLCK: a writer must still work there
    # (as mosaic's always did), only without the guard against a second writer.
    def no_flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX:
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outdir.fcntl, "flock", no_flock)
    _write(tmp_path / "out", 10)
    _write(tmp_path / "out", 7, exist_ok=True)
    assert _xs(tmp_path / "out") == list(range(7))
