"""A resumed epoch through real DataLoader workers follows the eager plan, with plans shared on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from astreaming import StreamingDataLoader, StreamingDataset
from astreaming.engine import ordering
from astreaming.order import EpochSpec, World, interleave_worker_batches, plan_worker_epoch

from .conftest import MakeDataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _expected(spec: EpochSpec, workers: int, epoch: int, sample_in_epoch: int) -> list[list[int]]:
    """The rank's batches from the eager reference plan, in the DataLoader's worker round-robin."""
    per_worker = [
        plan_worker_epoch(spec, World(1, 1, max(1, workers), w), epoch, sample_in_epoch).batches()
        for w in range(max(1, workers))
    ]
    return [b.tolist() for b in interleave_worker_batches(per_worker)]


def _spec(sizes: list[list[int]], kwargs: dict[str, Any]) -> EpochSpec:
    return EpochSpec.build(
        sizes,
        batch_size=kwargs["batch_size"],
        num_nodes=1,
        shuffle=kwargs.get("shuffle", False),
        shuffle_algo=kwargs.get("shuffle_algo", "py1e"),
        shuffle_seed=kwargs.get("shuffle_seed", 9176),
        shuffle_block_size=kwargs.get("shuffle_block_size"),
        batching_method=kwargs.get("batching_method", "random"),
    )


@pytest.mark.parametrize(
    ("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")], ids=["in-process", "fork", "spawn"]
)
def test_a_resumed_epoch_through_workers_matches_the_eager_plan(
    make_dataset: MakeDataset, tmp_path: Path, plans_dir: Path, workers: int, context: str | None
) -> None:
    remote = make_dataset(230, size_limit=700)
    kwargs: dict[str, Any] = dict(batch_size=4, shuffle=True, shuffle_block_size=40, shuffle_seed=11)
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), **kwargs)
    spec = _spec([ds.samples_per_shard.tolist()], kwargs)
    # Resume mosaic-style at a whole number of batches, and at the very last sample.
    for sample_in_epoch in (96, spec.epoch_size - 1):
        ds.load_state_dict(
            {"epoch": 0, "sample_in_epoch": sample_in_epoch, "num_canonical_nodes": 1, "shuffle_seed": 11}
        )
        loader = StreamingDataLoader(
            ds,
            batch_size=4,
            num_workers=workers,
            multiprocessing_context=context,
            persistent_workers=False,
        )
        got = [b["id"].tolist() for b in loader]
        assert got == _expected(spec, workers, 0, sample_in_epoch)
    # The workers shared the plan through files, and a finished epoch removed its artefacts.
    assert ordering.plan_store().root == plans_dir and plans_dir.is_dir()
    assert list(plans_dir.iterdir()) == []


@pytest.mark.parametrize("method", ["stratified", "per_stream", "device_per_stream"])
def test_resumed_mixing_batching_methods_through_fork_workers(
    make_dataset: MakeDataset, tmp_path: Path, plans_dir: Path, method: str
) -> None:
    a, b = make_dataset(90, size_limit=500), make_dataset(70, size_limit=500, first_id=1000)
    from astreaming import Stream

    kwargs: dict[str, Any] = dict(
        batch_size=3, shuffle=True, shuffle_block_size=30, shuffle_seed=5, batching_method=method
    )
    streams = [
        Stream(remote=str(a), local=str(tmp_path / "a")),
        Stream(remote=str(b), local=str(tmp_path / "b")),
    ]
    ds = StreamingDataset(streams=streams, **kwargs)
    spec = _spec(
        [
            ds.samples_per_shard[: ds.shards_per_stream[0]].tolist(),
            ds.samples_per_shard[ds.shards_per_stream[0] :].tolist(),
        ],
        kwargs,
    )
    ds.load_state_dict({"epoch": 0, "sample_in_epoch": 30, "num_canonical_nodes": 1, "shuffle_seed": 5})
    got = [b["id"].tolist() for b in StreamingDataLoader(ds, batch_size=3, num_workers=2)]
    table_ids = [[_global_to_id(ds, i) for i in batch] for batch in _expected(spec, 2, 0, 30)]
    assert got == table_ids


def _global_to_id(ds: StreamingDataset, sample: int) -> int:
    """The ``id`` column of global sample ``sample`` (stream b's ids start at 1000)."""
    first_b = int(ds.samples_per_stream[0])
    return sample if sample < first_b else 1000 + sample - first_b
