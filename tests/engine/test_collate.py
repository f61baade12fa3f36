"""StreamingDataLoader collates read-only MDS arrays without torch's "not writable" warning.

pytest turns every warning into an error (pyproject), so these tests fail if torch warns once, in the
main process or in a worker (a worker's warning would surface there as an exception in the batch).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset
from astreaming.dataloader import collate


def _arrays(out: Path, n: int = 24) -> None:
    with MDSWriter(
        out=str(out), columns={"id": "int", "x": "ndarray:float32:3", "m": "ndarray"}, size_limit=300
    ) as w:
        for i in range(n):
            w.write(
                {"id": i, "x": np.full(3, i, np.float32), "m": np.arange(4, dtype=np.int16).reshape(2, 2) + i}
            )


@pytest.mark.parametrize(("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")])
def test_ndarray_columns_collate_without_warning(tmp_path: Path, workers: int, context: str | None) -> None:
    _arrays(tmp_path / "ds")
    with StreamingDataset(remote=str(tmp_path / "ds"), local=str(tmp_path / "cache"), batch_size=4) as ds:
        loader = StreamingDataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=context)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # also in this process's collate (workers=0)
            batches = list(loader)
    ids = torch.cat([b["id"] for b in batches]).tolist()
    assert sorted(ids) == list(range(24))
    for b in batches:
        assert b["x"].dtype == torch.float32 and b["x"].shape == (len(b["id"]), 3)
        assert b["x"][:, 0].tolist() == [float(i) for i in b["id"].tolist()]
        assert b["m"].dtype == torch.int16 and b["m"].shape == (len(b["id"]), 2, 2)
        assert b["m"][:, 1, 1].tolist() == [i + 3 for i in b["id"].tolist()]


def test_collate_matches_default_collate_on_writable_input() -> None:
    batch = [{"a": np.arange(3, dtype=np.int64) + i, "s": f"s{i}", "n": i} for i in range(4)]
    ours = collate(batch)
    theirs = torch.utils.data.default_collate(batch)
    assert torch.equal(ours["a"], theirs["a"]) and ours["a"].dtype == theirs["a"].dtype
    assert ours["s"] == theirs["s"] and torch.equal(ours["n"], theirs["n"])
    read_only = [np.frombuffer(np.arange(3, dtype=np.float64).tobytes(), np.float64) for _ in range(2)]
    assert not read_only[0].flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = collate(read_only)
    assert out.tolist() == [[0.0, 1.0, 2.0]] * 2


def test_ragged_arrays_still_get_torchs_error() -> None:
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        collate([np.zeros(2), np.zeros(3)])


def test_a_given_collate_fn_is_kept(tmp_path: Path) -> None:
    _arrays(tmp_path / "ds", 4)
    with StreamingDataset(remote=str(tmp_path / "ds"), local=str(tmp_path / "cache"), batch_size=4) as ds:
        loader = StreamingDataLoader(ds, batch_size=4, collate_fn=list)
        (batch,) = list(loader)
    assert isinstance(batch, list) and len(batch) == 4 and isinstance(batch[0]["x"], np.ndarray)
