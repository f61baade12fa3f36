"""The uploading writers against real destinations: local dir, file://, fake-gcs-server, moto S3."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from output_remotes import Remote

from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.format.local import LocalDataset
from astreaming.format.writer import OutputExistsError
from astreaming.output import CSVWriter, JSONWriter, MDSWriter, TSVWriter, XSVWriter, merge_index

COLUMNS = {"id": "int", "text": "str", "vec": "ndarray:float32"}
N = 40


def sample(i: int) -> dict[str, Any]:
    return {"id": i, "text": f"sample {i} " * (i % 5), "vec": np.arange(1 + i % 7, dtype=np.float32) * i}


def check_dataset(root: Path, n: int = N) -> None:
    ds = LocalDataset(root)
    assert len(ds) == n
    for i in range(n):
        got = ds[i]
        want = sample(i)
        assert got["id"] == want["id"] and got["text"] == want["text"]
        np.testing.assert_array_equal(got["vec"], want["vec"])


def shard_names(index: dict[str, Any]) -> set[str]:
    names = set()
    for shard in index["shards"]:
        for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
            if shard.get(key) and (key.startswith("zip") or not shard.get("zip" + key[3:])):
                names.add(shard[key]["basename"])
    return names


def test_remote_url_roundtrip(bare: Remote, tmp_path: Path) -> None:
    with MDSWriter(
        out=bare.url,
        columns=COLUMNS,
        compression="zstd",
        hashes=["sha1"],
        size_limit=400,
        backend=bare.backend(),
    ) as w:
        staging = w.local
        assert staging.is_dir()  # a mkdtemp() staging directory
        for i in range(N):
            w.write(sample(i))
    index = json.loads(bare.get("index.json"))
    assert len(index["shards"]) > 3
    assert set(bare.listing()) == shard_names(index) | {"index.json"}
    check_dataset(bare.download(tmp_path / "copy"))
    assert not staging.exists()  # staging deleted: keep_local=False
    stats = w.uploader.statistics()  # type: ignore[attr-defined]
    assert stats.files_uploaded == len(index["shards"]) + 1 and stats.failures == 0


@pytest.mark.parametrize("keep_local", [True, False])
def test_tuple_out_keep_local(remote: Remote, tmp_path: Path, keep_local: bool) -> None:
    local = tmp_path / "local"
    with MDSWriter(out=(str(local), remote.url), columns=COLUMNS, size_limit=500, keep_local=keep_local) as w:
        for i in range(N):
            w.write(sample(i))
    check_dataset(remote.download(tmp_path / "copy"))
    if keep_local:
        files = sorted(p.name for p in local.iterdir())
        assert files == remote.listing()
        assert all((local / k).read_bytes() == remote.get(k) for k in files)
        check_dataset(local)
    else:
        assert not local.exists() or not any(local.iterdir())


def test_remote_url_keep_local_keeps_staging(bare: Remote, tmp_path: Path) -> None:
    w = MDSWriter(out=bare.url, columns=COLUMNS, keep_local=True, size_limit=500, backend=bare.backend())
    with w:
        for i in range(N):
            w.write(sample(i))
    try:
        check_dataset(w.local)
        assert sorted(p.name for p in w.local.iterdir()) == bare.listing()
    finally:
        for p in w.local.iterdir():
            p.unlink()
        w.local.rmdir()


def test_body_raising_publishes_no_index_anywhere(remote: Remote, tmp_path: Path) -> None:
    local = tmp_path / "local"
    w = MDSWriter(out=(str(local), remote.url), columns=COLUMNS, size_limit=300, keep_local=True)
    with pytest.raises(RuntimeError, match="boom"), w:
        for i in range(N):
            w.write(sample(i))
        raise RuntimeError("boom")
    assert "index.json" not in remote.listing()
    assert not (local / "index.json").exists()


def test_body_raising_removes_staging(bare: Remote) -> None:
    w = MDSWriter(out=bare.url, columns=COLUMNS, size_limit=300, backend=bare.backend())
    with pytest.raises(RuntimeError, match="boom"), w:
        for i in range(N):
            w.write(sample(i))
        raise RuntimeError("boom")
    assert not w.local.exists()
    assert "index.json" not in bare.listing()


def test_exist_ok_checks_the_remote(remote: Remote, tmp_path: Path) -> None:
    remote.put("old/shard.00000.mds", b"stale")
    remote.put("index.json", b'{"version": 2, "shards": []}')
    local = tmp_path / "local"
    with pytest.raises(OutputExistsError, match="not empty") as info:
        MDSWriter(out=(str(local), remote.url), columns=COLUMNS)
    assert remote.url.split("://")[-1] in str(info.value)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, ConfigError)
    assert not local.exists()  # refused before anything local was created
    # exist_ok=True: the old index goes first, so even a failed run leaves no stale index behind.
    w = MDSWriter(out=(str(local), remote.url), columns=COLUMNS, exist_ok=True)
    with pytest.raises(RuntimeError, match="abandon"), w:
        w.write(sample(0))
        raise RuntimeError("abandon")
    assert "index.json" not in remote.listing()
    with MDSWriter(out=(str(local), remote.url), columns=COLUMNS, exist_ok=True) as w:
        for i in range(N):
            w.write(sample(i))
    check_dataset(remote.download(tmp_path / "copy"))


def test_a_refused_local_side_leaves_the_remote_index_published(remote: Remote, tmp_path: Path) -> None:
    """``exist_ok=True`` unpublishes the remote index first; a local directory the writer then refuses (it
    holds the user's files, or another writer has it) must not have cost the remote its index."""
    with MDSWriter(out=remote.url, columns=COLUMNS, exist_ok=True) as w:
        w.write(sample(0))
    published = remote.get("index.json")
    local = tmp_path / "local"
    local.mkdir()
    (local / "notes.txt").write_text("the user's")
    with pytest.raises(OutputExistsError, match=r"notes\.txt"):
        MDSWriter(out=(str(local), remote.url), columns=COLUMNS, exist_ok=True)
    (local / "notes.txt").unlink()
    other = MDSWriter(out=str(local), columns=COLUMNS)
    with pytest.raises(OutputExistsError, match="being written by another writer"):
        MDSWriter(out=(str(local), remote.url), columns=COLUMNS, exist_ok=True)
    other.finish()
    assert remote.get("index.json") == published
    assert (local / "index.json").exists()  # the other writer's output, untouched


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (JSONWriter, {"compression": "zstd"}),
        (CSVWriter, {}),
        (TSVWriter, {"compression": "bz2"}),
        (XSVWriter, {"separator": "|"}),
    ],
)
def test_text_writers_upload_meta_files(
    cls: Any, kwargs: dict[str, Any], bare: Remote, tmp_path: Path
) -> None:
    columns = {"id": "int", "text": "str"}
    with cls(out=bare.url, columns=columns, size_limit=200, backend=bare.backend(), **kwargs) as w:
        for i in range(25):
            w.write({"id": i, "text": f"t{i}"})
    index = json.loads(bare.get("index.json"))
    assert set(bare.listing()) == shard_names(index) | {"index.json"}
    assert any(".meta" in k for k in bare.listing())
    ds = LocalDataset(bare.download(tmp_path / "copy"))
    assert [ds[i]["id"] for i in range(len(ds))] == list(range(25))


def test_local_out_is_unchanged(tmp_path: Path) -> None:
    with MDSWriter(out=str(tmp_path / "plain"), columns=COLUMNS, size_limit=500) as w:
        for i in range(N):
            w.write(sample(i))
    assert w.uploader is None and w.remote is None
    check_dataset(tmp_path / "plain")
    with MDSWriter(out=f"file://{tmp_path}/viafile", columns=COLUMNS) as w:
        w.write(sample(0))
    assert w.uploader is None
    check_dataset(tmp_path / "viafile", 1)


def test_argument_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging_root = tmp_path / "tmp"
    staging_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_root))
    with pytest.raises(ConfigError, match="retry"):
        MDSWriter(out=(str(tmp_path / "a"), str(tmp_path / "r")), columns=COLUMNS, retry=0)
    with pytest.raises(ConfigError, match="max_workers"):
        MDSWriter(out=(str(tmp_path / "a"), str(tmp_path / "r")), columns=COLUMNS, max_workers=-1)
    with pytest.raises(UnknownOptionError, match="did you mean gs://"):
        MDSWriter(out="gcs://bucket/x", columns=COLUMNS)
    with pytest.raises(ConfigError, match="first element"):
        MDSWriter(out=("s3://b/x", str(tmp_path)), columns=COLUMNS)
    with pytest.raises(ConfigError, match=r"\(local, remote\)"):
        MDSWriter(out=(str(tmp_path),), columns=COLUMNS)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="same directory"):
        MDSWriter(out=(str(tmp_path / "same"), f"file://{tmp_path}/same/"), columns=COLUMNS)
    assert not (tmp_path / "a").exists()
    assert list(staging_root.iterdir()) == []  # failed constructions remove their staging directory


def test_progress_bar(bare: Remote, capsys: pytest.CaptureFixture[str]) -> None:
    with MDSWriter(
        out=bare.url, columns=COLUMNS, size_limit=400, progress_bar=True, backend=bare.backend()
    ) as w:
        for i in range(N):
            w.write(sample(i))
    err = capsys.readouterr().err
    total = sum(len(bare.get(k)) for k in bare.listing())
    assert "Uploading to" in err and "100%" in err
    assert w.uploader.statistics().bytes_uploaded == total  # type: ignore[attr-defined]


def test_local_output_is_byte_identical_to_the_format_writer(tmp_path: Path) -> None:
    from astreaming.format.mds.writer import MDSWriter as FormatMDSWriter

    for cls, out in ((FormatMDSWriter, tmp_path / "a"), (MDSWriter, tmp_path / "b")):
        with cls(out=str(out), columns=COLUMNS, compression="zstd:3", hashes=["xxh64"], size_limit=300) as w:
            for i in range(N):
                w.write(sample(i))
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(files) > 3
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_overwrite_unpublishes_the_partitions_a_previous_conversion_left(
    cloud: Remote, tmp_path: Path
) -> None:
    """A conversion with 3 workers, then one with 2 and ``exist_ok``: the third partition of the first is
    not rewritten, and its published index must not come back through merge_index's root form (the
    local form deletes it: tests/cli/test_cli_convert.py)."""
    from astreaming.convert import ConvertOptions, convert

    src = tmp_path / "rows.jsonl"
    src.write_text("".join(f'{{"id": {i}, "text": "{"w" * 60}"}}\n' for i in range(300)))
    convert(src, cloud.url, ConvertOptions(workers=3, progress=False))
    assert "part-00002/index.json" in cloud.listing()
    convert(src, cloud.url, ConvertOptions(workers=2, exist_ok=True, progress=False))
    assert "part-00002/index.json" not in cloud.listing()
    merge_index(cloud.url + "/", keep_local=False)  # the root form: every partition index below out
    ds = LocalDataset(cloud.download(tmp_path / "copy"))
    assert [ds[i]["id"] for i in range(len(ds))] == list(range(300))


def test_overwrite_keeps_indexes_that_are_not_partitions(cloud: Remote) -> None:
    cloud.put("part-00004/index.json", b"{}")
    cloud.put("notes/index.json", b"another dataset of the user's below out: not a partition")
    with MDSWriter(out=cloud.url, columns=COLUMNS, exist_ok=True) as w:
        w.write(sample(0))
    listing = cloud.listing()
    assert "part-00004/index.json" not in listing and "notes/index.json" in listing
