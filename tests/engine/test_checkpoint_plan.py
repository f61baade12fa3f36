"""A checkpoint carries its epoch's shuffle draws: a resume on a new machine continues the epoch exactly,
without replaying them, through the public API (StreamingDataLoader, 0 and 2 fork/spawn workers)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming import StreamingDataLoader, StreamingDataset
from astreaming.order import hints, perm

from .conftest import MakeDataset

pytestmark = pytest.mark.filterwarnings("ignore:.*shuffle block.*:UserWarning")

BATCH = 4
DRAWS = ("py1e_draws", "py1s_draws", "py2s_draws", "py1br_draws")


class Machine:
    """A node of its own: its cache directory and its temp directory (where the plan store lives)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.monkeypatch = root, monkeypatch
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True)
        self.enter()

    def enter(self) -> None:
        self.monkeypatch.setenv("TMPDIR", str(self.tmp))  # spawned workers
        self.monkeypatch.setattr(tempfile, "tempdir", str(self.tmp))  # this process and forked workers

    @property
    def plans(self) -> Path:
        return self.tmp / "astreaming-plans"

    def loader(self, remote: Path, workers: int, context: str | None, **kwargs: Any) -> StreamingDataLoader:
        ds = StreamingDataset(
            remote=str(remote), local=str(self.root / "cache"), batch_size=BATCH, shuffle=True, **kwargs
        )
        return StreamingDataLoader(
            ds,
            batch_size=BATCH,
            num_workers=workers,
            multiprocessing_context=context,
            persistent_workers=False,
        )


def _ids(loader: StreamingDataLoader, stop: int | None = None) -> list[list[int]]:
    out = []
    for batch in loader:
        out.append(batch["id"].tolist())
        if stop is not None and len(out) == stop:
            break
    return out


def _no_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, replaying an epoch's draws fails (in this process and forked workers)."""

    def replayed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the epoch's draws were replayed")

    for name in DRAWS:
        monkeypatch.setattr(perm, name, replayed)


def _checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    remote: Path,
    workers: int,
    context: str | None,
    **kw: Any,
) -> tuple[dict[str, Any], list[list[int]]]:
    """A checkpoint after 7 batches on machine "a", and the batches the epoch yields after it."""
    a = Machine(tmp_path / "a", monkeypatch)
    loader = a.loader(remote, workers, context, **kw)
    it = iter(loader)
    for _ in range(7):
        next(it)
    state = loader.state_dict()
    assert state is not None
    rest = [b["id"].tolist() for b in it]
    return state, rest


CONFIGS = [
    pytest.param(dict(shuffle_algo=algo, shuffle_block_size=60), id=algo)
    for algo in ("py1e", "py1s", "py2s", "py1br")
] + [
    pytest.param(
        dict(shuffle_algo="py1e", shuffle_block_size=60, batching_method=method), id=f"py1e-{method}"
    )
    for method in ("per_stream", "stratified", "device_per_stream")
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_a_resume_on_a_new_machine_uses_the_checkpoints_draws(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any]
) -> None:
    remote = make_dataset(600, size_limit=500)
    state, rest = _checkpoint(tmp_path, monkeypatch, remote, 0, None, **kwargs)
    # mosaic's keys, plus one JSON-safe string (mosaic's load_state_dict serialises the dict to JSON).
    assert set(state) == {
        "epoch",
        "sample_in_epoch",
        "num_canonical_nodes",
        "shuffle_seed",
        "initial_physical_nodes",
        hints.KEY,
    }
    assert json.loads(json.dumps(state)) == state
    carried = hints.decode_hints(state[hints.KEY])
    assert carried and all(key.startswith("perm-") for key in carried)

    b = Machine(tmp_path / "b", monkeypatch)
    loader = b.loader(remote, 0, None, **kwargs)
    _no_replay(monkeypatch)
    loader.load_state_dict(state)
    assert sorted(p.name for p in b.plans.iterdir()) == sorted(carried)  # offered before the iteration
    assert _ids(loader) == rest


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_on_a_new_machine_read_the_draws_the_checkpoint_carried(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    remote = make_dataset(600, size_limit=500)
    kwargs: dict[str, Any] = dict(shuffle_block_size=60, cache_limit="40kb")
    state, rest = _checkpoint(tmp_path, monkeypatch, remote, 2, context, **kwargs)
    assert hints.KEY in state
    b = Machine(tmp_path / "b", monkeypatch)
    loader = b.loader(remote, 2, context, **kwargs)
    _no_replay(monkeypatch)  # forked workers inherit it; spawned ones read the plan store's files
    loader.load_state_dict(state)
    assert _ids(loader) == rest


def test_a_checkpoint_without_or_with_a_foreign_plan_resumes_the_same(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset(600, size_limit=500)
    state, rest = _checkpoint(tmp_path, monkeypatch, remote, 0, None, shuffle_block_size=60)
    plain = {k: v for k, v in state.items() if k != hints.KEY}
    # Without the key (mosaic's checkpoint): the draws are replayed, the same samples follow.
    b = Machine(tmp_path / "b", monkeypatch)
    loader = b.loader(remote, 0, None, shuffle_block_size=60)
    loader.load_state_dict(plain)
    assert _ids(loader) == rest
    # The plan of another configuration (block 60) is never looked up by a dataset of block 80: it
    # resumes as from mosaic's keys alone.
    c = Machine(tmp_path / "c", monkeypatch)
    loader = c.loader(remote, 0, None, shuffle_block_size=80)
    loader.load_state_dict(state)
    resumed = _ids(loader)
    d = Machine(tmp_path / "d", monkeypatch)
    reference = d.loader(remote, 0, None, shuffle_block_size=80)
    reference.load_state_dict(plain)
    assert resumed == _ids(reference)
    assert resumed != rest  # the block size matters: the foreign draws would have given ``rest``


def test_a_damaged_plan_is_ignored_with_a_warning(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset(600, size_limit=500)
    state, rest = _checkpoint(tmp_path, monkeypatch, remote, 0, None, shuffle_block_size=60)
    text = state[hints.KEY]
    middle = len(text) // 2
    damaged = dict(state)
    damaged[hints.KEY] = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    b = Machine(tmp_path / "b", monkeypatch)
    loader = b.loader(remote, 0, None, shuffle_block_size=60)
    with pytest.warns(UserWarning, match="astreaming_plan"):
        loader.load_state_dict(damaged)
    assert _ids(loader) == rest


def test_only_an_explicit_checkpoint_of_a_shuffled_epoch_carries_draws(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset(600, size_limit=500)
    a = Machine(tmp_path / "a", monkeypatch)
    loader = a.loader(remote, 0, None, shuffle_block_size=60)
    _ids(loader, stop=3)
    ds = loader.dataset
    assert isinstance(ds, StreamingDataset)
    assert hints.KEY in ds.state_dict(12, True)
    # torchdata's snapshot in each worker, at every step: mosaic's keys only.
    assert hints.KEY not in ds.state_dict()
    flat = StreamingDataset(remote=str(remote), local=str(tmp_path / "flat"), batch_size=BATCH)
    _ids(StreamingDataLoader(flat, batch_size=BATCH), stop=3)
    assert hints.KEY not in flat.state_dict(12, True)  # no shuffle, no draws


def test_the_checkpoints_string_is_encoded_once_per_epoch(
    make_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_dataset(600, size_limit=500)
    a = Machine(tmp_path / "a", monkeypatch)
    loader = a.loader(remote, 0, None, shuffle_block_size=60)
    it = iter(loader)
    next(it)
    first = loader.state_dict()
    next(it)
    second = loader.state_dict()
    assert first is not None and second is not None
    assert second[hints.KEY] is first[hints.KEY]
    assert second["sample_in_epoch"] == first["sample_in_epoch"] + BATCH
    assert np.array_equal(
        next(iter(hints.decode_hints(first[hints.KEY]).values()))["shuffle_state"],
        next(iter(hints.decode_hints(second[hints.KEY]).values()))["shuffle_state"],
    )
