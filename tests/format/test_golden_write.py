"""Writing the golden inputs with the golden writer arguments reproduces mosaic's files byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from astreaming.format.compression import get_compression
from astreaming.format.index import load_index
from astreaming.format.mds.writer import MDSWriter
from astreaming.format.merge import merge_index

from .conftest import WRITERS
from .golden import GOLDEN, data_dir, datasets, expected, untag


def _write(writer: str, kwargs: dict[str, Any], inputs: list[dict[str, Any]], out: Path, tmp: Path) -> None:
    with WRITERS[writer](out=str(out), **kwargs) as w:
        for sample in inputs:
            w.write({k: untag(v, tmp) for k, v in sample.items()})


def _listing(root: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in root.rglob("*")
        if p.is_file()
    }


REPRODUCIBLE = [
    n for n in datasets() if expected(n)["reproducible_bytes"] and expected(n)["writer"] in WRITERS
]


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_writer_reproduces_golden_files(name: str, tmp_path: Path) -> None:
    exp = expected(name)
    out = tmp_path / "out"
    _write(exp["writer"], exp["writer_kwargs"], exp["inputs"], out, tmp_path)
    assert _listing(out) == {k: (v["bytes"], v["sha256"]) for k, v in exp["files"].items()}


def test_gz_writer_same_names_and_content(tmp_path: Path) -> None:
    # gzip embeds the mtime: only names and decompressed content can match.
    name = "mds/comp_gz"
    exp = expected(name)
    out = tmp_path / "out"
    _write(exp["writer"], exp["writer_kwargs"], exp["inputs"], out, tmp_path)
    assert sorted(_listing(out)) == sorted(exp["files"])
    codec = get_compression("gz")
    assert codec is not None
    ours, theirs = load_index(out / "index.json"), load_index(data_dir(name) / "index.json")
    assert [e.raw_data for e in ours] == [e.raw_data for e in theirs]  # raw names, sizes and hashes
    for entry in ours:
        assert entry.zip_data is not None
        mine = codec.decompress((out / entry.zip_data.basename).read_bytes(), expected_size=None, name="ours")
        gold = (data_dir(name) / entry.zip_data.basename).read_bytes()
        assert mine == codec.decompress(gold, expected_size=None, name="golden")


def test_merged_partitions_reproduce_golden(tmp_path: Path) -> None:
    exp = expected("mds/merged")
    out = tmp_path / "out"
    inputs = iter(exp["inputs"])
    for part in exp["partitions"]:
        kwargs = dict(exp["writer_kwargs"], compression=part["compression"])
        samples = [next(inputs) for _ in range(part["num_samples"])]
        _write("MDSWriter", kwargs, samples, out / part["subdir"], tmp_path)
    merge_index([str(out / p["subdir"] / "index.json") for p in exp["partitions"]], str(out))
    assert _listing(out) == {k: (v["bytes"], v["sha256"]) for k, v in exp["files"].items()}


def test_golden_tree_is_pristine() -> None:
    # The tests above compare against these files; make sure nobody rewrote them.
    for name in datasets():
        for rel, info in expected(name)["files"].items():
            path = GOLDEN / name / "data" / rel
            assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], path


def test_size_accounting_matches_golden_shard_counts(tmp_path: Path) -> None:
    # zero_first_shard: the first sample does not fit an empty shard, so shard 0 holds 0 samples.
    exp = expected("mds/zero_first_shard")
    out = tmp_path / "out"
    with MDSWriter(out=str(out), **exp["writer_kwargs"]) as w:
        for sample in exp["inputs"]:
            w.write({k: untag(v) for k, v in sample.items()})
    assert [e.samples for e in load_index(out / "index.json")] == exp["samples_per_shard"]
    assert exp["samples_per_shard"][0] == 0
