"""Every golden dataset written by mosaic 0.13.0 reads back sample by sample, types included."""

from __future__ import annotations

import pytest

from astreaming.format.index import load_index
from astreaming.format.local import LocalDataset
from astreaming.format.reader import open_shard, verify_file

from .golden import assert_sample, data_dir, datasets, expected, payload


@pytest.mark.parametrize("name", datasets())
def test_every_sample_decodes_as_mosaic(name: str) -> None:
    exp = expected(name)
    ds = LocalDataset(data_dir(name), allow_unsafe_types=exp["read_kwargs"]["allow_unsafe_types"])
    assert len(ds) == len(exp["decoded"])
    for i, tagged in enumerate(exp["decoded"]):
        assert_sample(ds[i], tagged, f"{name}[{i}]")
    ds.close()


@pytest.mark.parametrize("name", datasets())
def test_stored_sample_bytes_and_shard_sizes(name: str) -> None:
    exp = expected(name)
    root = data_dir(name)
    entries = load_index(root / "index.json")
    assert [e.samples for e in entries] == exp["samples_per_shard"]
    blobs = []
    for entry in entries:
        reader = open_shard(root, entry, allow_unsafe_types=True)
        blobs += [reader.get_bytes(i) for i in range(len(reader))]
        reader.close()
    assert blobs == [payload(b) for b in exp["sample_bytes"]]


HASHED = [n for n in datasets() if expected(n)["read_kwargs"]["validate_hash"]]


@pytest.mark.parametrize("name", HASHED)
def test_index_digests_verify(name: str) -> None:
    algo = expected(name)["read_kwargs"]["validate_hash"]
    root = data_dir(name)
    for entry in load_index(root / "index.json"):
        for info in entry.fetch_files():
            verify_file(root, info, algo)
