"""Mid-epoch checkpoints at the edges a training loop reaches: saved again right after loading, in a
process whose dataset had already been iterated (a sanity-check loop, mosaic's hazard 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from astreaming import StreamingDataLoader, StreamingDataset
from astreaming.errors import ConfigError

from .conftest import MakeDataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def ids(loader: StreamingDataLoader, limit: int | None = None) -> list[list[int]]:
    out: list[list[int]] = []
    for batch in loader:
        out.append(batch["id"].tolist())
        if len(out) == limit:
            break
    return out


@pytest.mark.parametrize(("workers", "context"), [(0, None), (2, "fork")], ids=["in-process", "fork"])
def test_a_checkpoint_saved_right_after_loading_is_the_loaded_one(
    make_dataset: MakeDataset, tmp_path: Path, workers: int, context: str | None
) -> None:
    remote = make_dataset(60, size_limit=500)
    kwargs: dict[str, Any] = dict(remote=str(remote), batch_size=4, shuffle=True, shuffle_seed=7)

    def loader(name: str) -> StreamingDataLoader:
        ds = StreamingDataset(local=str(tmp_path / name), **kwargs)
        return StreamingDataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=context)

    reference = loader("reference")
    epochs = [ids(reference), ids(reference)]
    saver = loader("saver")
    ids(saver)
    assert ids(saver, 3) == epochs[1][:3]  # epoch 1, three batches in
    checkpoint = saver.state_dict()
    assert checkpoint["epoch"] == 1 and checkpoint["sample_in_epoch"] == 12

    job = loader("job")
    assert ids(job, 2) == epochs[0][:2]  # a sanity-check loop: two batches of epoch 0
    job.load_state_dict(checkpoint)
    # Saved before the first batch after the load (a trainer's step-0 save, a preemption right after
    # the restart): the loaded checkpoint, not epoch 0 plus the sanity loop's batches.
    assert job.state_dict() == checkpoint
    rest = ids(job)
    assert rest == epochs[1][3:]


def test_out_of_order_loader_refuses_a_mid_epoch_checkpoint(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    """With ``in_order=False`` torch hands out batches as workers finish them: after three batches the
    loader may hold worker 1's first two and worker 0's first, and a checkpoint of "12 samples" would
    then skip one batch and repeat another (seen with worker 0 held back). A typed error instead, and
    the checkpoint at the end of the epoch, which counts every batch, still works."""
    remote = make_dataset(60, size_limit=500)

    def loader(name: str) -> StreamingDataLoader:
        ds = StreamingDataset(remote=str(remote), local=str(tmp_path / name), batch_size=4, shuffle=True)
        return StreamingDataLoader(
            ds, batch_size=4, num_workers=2, multiprocessing_context="fork", in_order=False
        )

    job = loader("job")
    ids(job, 3)
    with pytest.raises(ConfigError, match="in_order=False"):
        job.state_dict()
    epoch = sorted(i for batch in ids(job) for i in batch)
    assert epoch == list(range(60))
    assert job.state_dict()["sample_in_epoch"] == 60
