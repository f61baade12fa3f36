"""StreamingDataLoader over small str/bytes samples: packed columns and batches sent in groups.

Over a layout whose only non-numeric columns are ``str`` and ``bytes``, workers pack those columns
(``format/mds/packed.py``) and send their batches several at a time (``batched.Group``), which the loader
hands out one by one. The batches must equal a plain ``DataLoader``'s over the per-sample iteration
(keys, types, values, order), with 0, 2 and 3 workers, fork and spawn, groups of every size, short and
dropped last batches, and text that cannot be packed (non-ASCII) mixed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import astreaming.dataloader
import astreaming.format.mds.columns
from astreaming import MDSWriter
from astreaming.batched import Group, ungroup

from .test_batched import assert_same_batches, both

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")

COLUMNS = {"id": "int", "text": "str", "blob": "bytes", "x": "float32"}


@pytest.fixture(autouse=True)
def _pack_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pack runs of every length (batches of 5 here; by default runs under PACK_MIN_ROWS are decoded value
    by value). Forked workers inherit this; spawned ones decode with the default, and must agree too."""
    monkeypatch.setattr(astreaming.format.mds.columns, "PACK_MIN_ROWS", 0)


def _write(out: Path, n: int, non_ascii_every: int = 0) -> Path:
    with MDSWriter(out=str(out), columns=COLUMNS, size_limit=3_000) as w:
        for i in range(n):
            text = f"sample-{i}" + ("é" if non_ascii_every and i % non_ascii_every == 0 else "")
            blob = bytes((i + k) % 256 for k in range(300 if i % 37 == 0 else i % 11))
            w.write({"id": i, "text": text, "blob": blob, "x": np.float32(i) / 7})
    return out


@pytest.mark.parametrize(
    ("workers", "context", "group_max", "drop_last"),
    [
        (0, None, 16, False),
        (2, "fork", 16, False),
        (2, "fork", 3, True),
        (3, "fork", 2, False),  # workers with different numbers of batches: rounds end unevenly
        (3, "fork", 1, True),
        (2, "spawn", 3, False),
    ],
)
def test_packed_batches_equal_per_sample_collation(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
    context: str | None,
    group_max: int,
    drop_last: bool,
) -> None:
    monkeypatch.setattr(astreaming.dataloader, "GROUP_MAX", group_max)
    remote = _write(tmp_path / "ds", 257, non_ascii_every=45)
    kwargs = {"num_workers": workers, "multiprocessing_context": context, "drop_last": drop_last}
    got, want, loader = both(remote, tmp_path / "cache", 5, **kwargs)
    view: Any = loader._batched_loader().dataset  # type: ignore[union-attr]
    assert view._group == (1 if workers == 0 else group_max)
    assert_same_batches(got, want)
    ids = [i for b in got for i in b["id"].tolist()]
    assert len(ids) == len(set(ids)) and loader.num_samples_yielded == len(ids)
    if not drop_last:
        assert sorted(ids) == list(range(257))
    texts = {t for b in got for t in b["text"]}
    assert "sample-45é" in texts and "sample-46" in texts  # batches with and without non-ASCII text


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_workers_groups_grow_from_one_batch(tmp_path: Path, context: str) -> None:
    """The loader waits for a worker's first group before any batch of that worker: its first groups are
    small (1, 2, 4, ... batches), so a second batch does not wait for GROUP_MAX batches to be made."""
    from astreaming import StreamingDataLoader, StreamingDataset

    remote = _write(tmp_path / "ds", 257)  # batches of 5: 52, 26 per worker
    ds = StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=5)
    loader = StreamingDataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context=context)
    inner = loader._batched_loader()
    assert inner is not None
    items = list(inner)
    assert all(isinstance(item, Group) for item in items)
    for worker in (0, 1):
        sizes = [len(g.batches) for g in items if g.worker == worker]
        assert sizes == [1, 2, 4, 8, 11]
    batches = list(ungroup(iter(items), 2))
    assert [len(b["id"]) for b in batches] == [5] * 51 + [2]
    assert sorted(int(i) for b in batches for i in b["id"]) == list(range(257))
    ds.close()


def test_groups_out_of_order_hold_every_batch(tmp_path: Path) -> None:
    remote = _write(tmp_path / "ds", 120)
    got, want, _ = both(
        remote, tmp_path / "cache", 4, num_workers=2, multiprocessing_context="fork", in_order=False
    )
    key = [(b["id"].tolist(), b["text"], b["blob"]) for b in got]
    assert sorted(key) == sorted((b["id"].tolist(), b["text"], b["blob"]) for b in want)


def test_group_size_follows_the_batch_bytes_and_the_timeout(tmp_path: Path) -> None:
    remote = _write(tmp_path / "ds", 40)
    big = tmp_path / "big"
    with MDSWriter(out=str(big), columns={"id": "int", "blob": "bytes"}) as w:
        for i in range(40):
            w.write({"id": i, "blob": bytes(100_000)})

    def group(root: Path, **kwargs: Any) -> int:
        from astreaming import StreamingDataLoader, StreamingDataset

        ds = StreamingDataset(remote=str(root), local=str(tmp_path / f"c{root.name}"), batch_size=4)
        view: Any = StreamingDataLoader(ds, batch_size=4, **kwargs)._batched_loader().dataset  # type: ignore[union-attr]
        return int(view._group)

    assert group(remote, num_workers=2) == astreaming.dataloader.GROUP_MAX
    assert group(big, num_workers=2) == 2  # 400 kB a batch: two fit in GROUP_BYTES
    assert group(remote, num_workers=2, timeout=30) == 1  # the timeout bounds the wait for one batch
    assert group(remote, num_workers=0) == 1


def test_ungroup_restores_torchs_round_robin_when_workers_run_out() -> None:
    # Worker batch counts 7, 3 and 0, groups of 2: torch alone would hand out w0b0 w1b0 w0b1 w1b1 w0b2
    # w1b2 w0b3 w0b4 w0b5 w0b6 (a worker that ran out is skipped); the groups arrive round by round.
    batches = {0: [f"w0b{j}" for j in range(7)], 1: [f"w1b{j}" for j in range(3)]}
    groups = [Group(w, r, batches[w][2 * r : 2 * r + 2]) for r in range(4) for w in (0, 1)]
    groups = [g for g in groups if g.batches]
    want = ["w0b0", "w1b0", "w0b1", "w1b1", "w0b2", "w1b2", "w0b3", "w0b4", "w0b5", "w0b6"]
    assert list(ungroup(iter(groups), 3)) == want
    assert list(ungroup(iter(groups), 2)) == want
    assert sorted(ungroup(iter(groups), 3, in_order=False)) == sorted(want)
    assert list(ungroup(iter(["a", "b"]), 2)) == ["a", "b"]  # no workers: batches pass through


def test_pinning_keeps_a_group_a_group() -> None:
    # torch's pin-memory thread rebuilds named tuples and turns plain tuples into lists: a group must
    # come out of it as a group (its tensors pinned), or the loader would hand out groups as batches.
    from torch.utils.data._utils.pin_memory import pin_memory

    group = Group(1, 0, [{"text": ["a", "b"]}, {"text": ["c"]}])
    pinned = pin_memory(group)
    assert isinstance(pinned, Group) and pinned == group
    assert list(ungroup(iter([pinned]), 2)) == group.batches
