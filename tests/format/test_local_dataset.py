"""LocalDataset: map-style access over every format, mosaic's Array indexing, DataLoader compatibility."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from astreaming.errors import ConfigError, FormatError
from astreaming.format.local import LocalDataset
from astreaming.format.mds.writer import MDSWriter

from .conftest import WriteFn
from .golden import data_dir


@pytest.fixture
def ds_dir(write_mds: WriteFn) -> Path:
    # 40 samples over several shards, the first one empty (size_limit below the header size).
    samples = [{"id": i, "s": "x" * (i % 5)} for i in range(40)]
    return write_mds({"id": "int", "s": "str"}, samples, size_limit=150)


def test_len_and_indexing_forms(ds_dir: Path) -> None:
    ds = LocalDataset(ds_dir)
    assert len(ds) == ds.size == 40 and len(ds.shards) > 3 and ds.shards[0].samples == 0
    assert ds[0] == {"id": 0, "s": ""}
    assert ds[-1]["id"] == 39 and ds[np.int64(7)]["id"] == 7
    assert [s["id"] for s in ds[5:12:3]] == [5, 8, 11]
    assert [s["id"] for s in ds[::-7]] == [39, 32, 25, 18, 11, 4]
    assert [s["id"] for s in ds[[3, -2, 0]]] == [3, 38, 0]
    assert [s["id"] for s in ds[np.array([9, 1])]] == [9, 1]
    assert [[s["id"] for s in row] for row in ds[[[1, 2], [3]]]] == [[1, 2], [3]]
    for bad in (40, -41):
        with pytest.raises(IndexError):
            ds[bad]
    with pytest.raises(TypeError):
        ds["3"]
    # Random order visits shards out of sequence.
    order = np.random.default_rng(0).permutation(40)
    assert [ds[int(i)]["id"] for i in order] == order.tolist()
    assert ds.shard_of([0, 39]).tolist() == [ds.locate(0)[0], ds.locate(39)[0]]
    ds.close()
    assert ds[3]["id"] == 3  # reopens lazily after close


def test_split_and_missing_index(tmp_path: Path) -> None:
    with MDSWriter(out=str(tmp_path / "train"), columns={"a": "int"}) as w:
        w.write({"a": 5})
    assert LocalDataset(tmp_path, split="train")[0] == {"a": 5}
    with pytest.raises(FormatError, match="index file not found"):
        LocalDataset(tmp_path, split="val")


def test_pkl_refused_at_init(write_mds: WriteFn) -> None:
    root = write_mds({"p": "pkl"}, [{"p": [1, 2]}])
    with pytest.raises(ConfigError, match="allow_unsafe_types"):
        LocalDataset(root)
    assert LocalDataset(root, allow_unsafe_types=True)[0] == {"p": [1, 2]}


def test_empty_dataset(tmp_path: Path) -> None:
    MDSWriter(out=str(tmp_path), columns={"a": "int"}).finish()
    ds = LocalDataset(tmp_path)
    assert len(ds) == 0 and ds[0:5] == []
    with pytest.raises(IndexError):
        ds[0]


def test_pickles_without_open_mappings(ds_dir: Path) -> None:
    ds = LocalDataset(ds_dir)
    assert ds[20]["id"] == 20
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[21]["id"] == 21 and len(clone) == 40


def test_torch_dataloader_map_style(ds_dir: Path) -> None:
    from torch.utils.data import DataLoader

    loader = DataLoader(LocalDataset(ds_dir), batch_size=8, num_workers=2, shuffle=False)
    ids = [int(i) for batch in loader for i in batch["id"]]
    assert ids == list(range(40))


def test_reads_compressed_golden_without_raw_files() -> None:
    root = data_dir("mds/comp_snappy")
    assert not list(root.glob("*.mds"))
    ds = LocalDataset(root)
    assert len(ds) == 30 and ds[29]["id"] == 29


def test_unknown_encoding_and_missing_shard(ds_dir: Path) -> None:
    index = ds_dir / "index.json"
    original = index.read_text()
    index.write_text(original.replace('"str"', '"str16"'))
    with pytest.raises(FormatError, match=r"shard\.00000\.mds: column 's'.*str16"):
        LocalDataset(ds_dir)  # refused at init, before any sample is read
    index.write_text(original)
    (ds_dir / "shard.00001.mds").unlink()
    ds = LocalDataset(ds_dir)
    with pytest.raises(FormatError, match=r"shard\.00001\.mds: shard file not found"):
        ds[0]
