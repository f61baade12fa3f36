"""torchdata's ``StatefulDataLoader`` restored anywhere in an epoch continues exactly as the uninterrupted
run, and a worker's restore starts at its position instead of computing the plan before it.

The states are the loader's own, taken during one uninterrupted pass: at the start, after the first
batch, mid-epoch, and over the last batches, where (the two workers' parts differ in length) one worker
yields the last sample of its part and then runs out while the other goes on. With a DataLoader batch of
1 or 3 samples (the dataset's batches are 4), workers stop in the middle of the plan's batches and at
different positions from one another.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from astreaming import Stream, StreamingDataset
from astreaming import dataset as dataset_module
from astreaming.cache.plans import FilePlanStore
from astreaming.errors import ConfigError
from astreaming.order.store import Arrays

from .conftest import MakeDataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torchdata's set_vital; stratified's

#: Order settings (dataset batch size 4). The batching methods other than random mix two streams.
ORDERS: dict[str, dict[str, Any]] = {
    "py1e": dict(shuffle=True, shuffle_algo="py1e", shuffle_block_size=24, shuffle_seed=7),
    "py1br": dict(shuffle=True, shuffle_algo="py1br", shuffle_block_size=24, shuffle_seed=7),
    "py1s": dict(shuffle=True, shuffle_algo="py1s", shuffle_seed=7, num_canonical_nodes=2),
    "py2s": dict(shuffle=True, shuffle_algo="py2s", shuffle_seed=7, num_canonical_nodes=2),
    "naive": dict(shuffle=True, shuffle_algo="naive", shuffle_seed=7),
    "off": dict(shuffle=False),
    # An epoch that itself resumed from a mosaic checkpoint at sample 12 ("sample_in_epoch" is popped).
    "py1e-from-12": dict(shuffle=True, shuffle_algo="py1e", shuffle_block_size=24, sample_in_epoch=12),
    "stratified": dict(shuffle=True, shuffle_seed=7, shuffle_block_size=24, batching_method="stratified"),
    "per_stream": dict(shuffle=True, shuffle_seed=7, shuffle_block_size=24, batching_method="per_stream"),
    "device_per_stream": dict(
        shuffle=True, shuffle_seed=7, shuffle_block_size=24, batching_method="device_per_stream"
    ),
}
#: DataLoader batch size and drop_last.
LOADS = [(1, False), (3, True), (3, False)]


def _factory(
    make_dataset: MakeDataset,
    tmp_path: Path,
    order: str,
    workers: int,
    context: str | None,
    load: tuple[int, bool],
) -> Callable[[str], Any]:
    kwargs = dict(ORDERS[order])
    sample_in_epoch = kwargs.pop("sample_in_epoch", 0)
    if "batching_method" in kwargs:
        a, b = make_dataset(46, size_limit=400), make_dataset(38, size_limit=400, first_id=1000)
    else:
        a, b = make_dataset(70, size_limit=400), None
    batch_size, drop_last = load

    def loader(name: str) -> Any:
        if b is None:
            ds = StreamingDataset(remote=str(a), local=str(tmp_path / name), batch_size=4, **kwargs)
        else:
            streams = [
                Stream(remote=str(a), local=str(tmp_path / name / "a")),
                Stream(remote=str(b), local=str(tmp_path / name / "b")),
            ]
            ds = StreamingDataset(streams=streams, batch_size=4, **kwargs)
        if sample_in_epoch:
            ds.load_state_dict({"epoch": 0, "sample_in_epoch": sample_in_epoch})
        return StatefulDataLoader(
            ds,
            batch_size=batch_size,
            drop_last=drop_last,
            num_workers=workers,
            multiprocessing_context=context,
        )

    return loader


def _ids(batch: dict[str, Any]) -> list[int]:
    return [int(i) for i in batch["id"]]


def _pass_with_states(loader: Any) -> tuple[list[list[int]], dict[int, dict[str, Any]]]:
    """One uninterrupted epoch, and the loader's state after 0, 1, half and each of the last 3 batches."""
    states = {0: loader.state_dict()}
    batches: list[list[int]] = []
    snapshots: list[tuple[int, dict[str, Any]]] = []
    for batch in loader:
        batches.append(_ids(batch))
        snapshots.append((len(batches), loader.state_dict()))
    n = len(batches)
    wanted = {1, n // 2, n // 2 + 1, n - 3, n - 2, n - 1}
    states.update((k, s) for k, s in snapshots if k in wanted and 0 < k < n)
    return batches, states


def _check_tails(factory: Callable[[str], Any], plans: Path, few: bool = False) -> None:
    """Restore each state in a fresh loader: the rest equals the uninterrupted pass's rest. ``few``: only
    mid-epoch and the last two batches (spawned workers take seconds to start).

    Every loader runs to the epoch's end, restored ones too: then no plan artefact is left behind.
    """
    full, states = _pass_with_states(factory("full"))
    assert len(full) >= 8 and len(states) >= 6
    if few:
        states = {k: s for k, s in states.items() if k in (len(full) // 2 + 1, len(full) - 2, len(full) - 1)}
    for k, state in states.items():
        resumed = factory(f"resumed{k}")
        resumed.load_state_dict(state)
        assert [_ids(b) for b in resumed] == full[k:], f"restored after batch {k} of {len(full)}"
    left = sorted(plans.iterdir()) if plans.exists() else []  # no shuffle, no artefact, no directory
    assert left == []


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("load", LOADS, ids=["batch1", "batch3-drop-last", "batch3"])
@pytest.mark.parametrize(("workers", "context"), [(0, None), (2, "fork")], ids=["in-process", "fork"])
def test_a_restored_loader_continues_as_the_uninterrupted_one(
    make_dataset: MakeDataset,
    tmp_path: Path,
    order: str,
    load: tuple[int, bool],
    workers: int,
    context: str | None,
    plans_dir: Path,
) -> None:
    _check_tails(_factory(make_dataset, tmp_path, order, workers, context, load), plans_dir)


@pytest.mark.parametrize("order", ["py1e", "per_stream"])
def test_a_restored_loader_with_spawned_workers_continues_as_the_uninterrupted_one(
    make_dataset: MakeDataset, tmp_path: Path, order: str, plans_dir: Path
) -> None:
    _check_tails(_factory(make_dataset, tmp_path, order, 2, "spawn", (3, False)), plans_dir, few=True)


class _LoggingStore(FilePlanStore):
    """The engine's plan store, appending the key of every artefact it computes to ``log`` (one line
    each, so that forked workers' computations count too)."""

    def __init__(self, root: Path, log: Path) -> None:
        super().__init__(root)
        self.log = log

    def get(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        """The artefact ``key``; its computation is logged."""

        def logged() -> Arrays:
            with self.log.open("a") as out:
                out.write(key + "\n")
            return compute()

        return super().get(key, logged)


@pytest.mark.parametrize(("workers", "context"), [(0, None), (2, "fork")], ids=["in-process", "fork"])
def test_a_late_restore_computes_only_the_shuffle_blocks_it_reads(
    make_dataset: MakeDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
    context: str | None,
) -> None:
    remote = make_dataset(2000, size_limit=4000)
    kwargs = dict(batch_size=4, shuffle=True, shuffle_algo="py1br", shuffle_block_size=100, shuffle_seed=3)

    def loader(name: str) -> Any:
        # Each phase gets a plan directory of its own: the restore finds nothing computed.
        log = tmp_path / f"{name}.log"
        store = _LoggingStore(tmp_path / f"{name}-plans", log)
        monkeypatch.setattr(dataset_module, "plan_store", lambda: store)
        ds = StreamingDataset(remote=str(remote), local=str(tmp_path / name), **kwargs)  # type: ignore[arg-type]
        return StatefulDataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=context)

    first = loader("first")
    batches = iter(first)
    stop = 450  # of 500 batches
    for _ in range(stop):
        next(batches)
    state = first.state_dict()
    following = _ids(next(batches))
    del batches, first

    resumed = loader("resumed")
    resumed.load_state_dict(state)
    assert _ids(next(iter(resumed))) == following

    def blocks(name: str) -> set[str]:
        keys = (tmp_path / f"{name}.log").read_text().split()
        return {k for k in keys if k.rsplit("-", 1)[-1].startswith("k")}  # "<perm key>-k<block>"

    # The walk to batch 450 computed ~18 of the epoch's 20 shuffle blocks; the restore computes the one
    # or two its workers' first batches (and the chunks read one ahead) fall in.
    assert len(blocks("first")) >= 15
    assert 1 <= len(blocks("resumed")) <= 2, blocks("resumed")


def test_a_negative_position_is_refused_naming_it(make_dataset: MakeDataset, tmp_path: Path) -> None:
    remote = make_dataset(20, size_limit=400)

    def loader(name: str) -> Any:
        ds = StreamingDataset(remote=str(remote), local=str(tmp_path / name), batch_size=4, shuffle=True)
        return StatefulDataLoader(ds, batch_size=4)

    first = loader("first")
    next(iter(first))
    state = first.state_dict()
    state["fetcher_state"]["dataset_iter_state"]["samples_yielded"] = -1
    resumed = loader("resumed")
    resumed.load_state_dict(state)
    with pytest.raises(ConfigError, match=re.escape("got {'samples_yielded': -1}")):
        next(iter(resumed))
