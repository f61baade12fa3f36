"""``StreamingDataLoader(batch_size=None)`` hands out the dataset's samples one by one: each counts as one
sample in ``num_samples_yielded`` and in its checkpoint, whatever the sample's first column holds (mosaic
counted the first value's length: a str's characters, and failed on an int)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset

SAMPLES = 120


def _write(out: Path, first: str) -> None:
    columns = {"id": "int", "text": "str"} if first == "int" else {"text": "str", "id": "int"}
    with MDSWriter(out=str(out), columns=columns, size_limit=1_000) as writer:
        for i in range(SAMPLES):
            writer.write({"id": i, "text": f"sample number {i}"})


@pytest.mark.parametrize("first", ["int", "str"])
@pytest.mark.parametrize("workers", [0, 2])
def test_samples_count_one_each_and_resume_where_they_stopped(
    tmp_path: Path, first: str, workers: int
) -> None:
    source = tmp_path / "ds"
    _write(source, first)
    ds = StreamingDataset(local=str(source), batch_size=4)
    context = "fork" if workers else None
    loader = StreamingDataLoader(ds, batch_size=None, num_workers=workers, multiprocessing_context=context)
    taken = [int(s["id"]) for s in itertools.islice(loader, 40)]
    assert loader.num_samples_yielded == 40
    state = loader.state_dict()
    assert state is not None and state["sample_in_epoch"] == 40
    ds.close()

    again = StreamingDataset(local=str(source), batch_size=4)
    resumed = StreamingDataLoader(
        again, batch_size=None, num_workers=workers, multiprocessing_context=context
    )
    resumed.load_state_dict(state)
    rest = [int(s["id"]) for s in resumed]
    again.close()
    assert resumed.num_samples_yielded == SAMPLES - 40
    assert sorted(taken + rest) == list(range(SAMPLES))
