"""Subclass hooks: an overridden ``get_item`` or ``__getitem__`` shapes every way of reading a sample.

mosaic's ``Array`` routes ``ds[i]`` and iteration through ``get_item``; a subclass overriding either hook
must see ``ds[i]``, ``for``, ``async for`` and DataLoader workers alike, and each sample is decoded once.
Decodes are counted by a user-registered encoding that stamps each decoded value with a per-process tick:
a sample decoded twice leaves a gap in the ticks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from astreaming import MDSEncoding, MDSWriter, StreamingDataLoader, StreamingDataset, register_encoding

_TICKS = itertools.count()


class CountedInt(MDSEncoding):
    """An int in 8 bytes; decodes to ``(value, tick, pid)``, the tick counting this process's decodes."""

    size = 8

    def encode(self, obj: Any) -> bytes:
        return int(obj).to_bytes(8, "little", signed=True)

    def decode(self, data: bytes) -> Any:
        return int.from_bytes(data, "little", signed=True), next(_TICKS), os.getpid()


# At import: spawn workers import this module to unpickle the datasets below, and register it again.
register_encoding("counted_int", CountedInt)


class GetItemHook(StreamingDataset):
    """mosaic's documented hook: transform in ``get_item``."""

    def get_item(self, sample_id: int) -> dict[str, Any]:
        sample = super().get_item(sample_id)
        sample["hook"] = "get_item"
        return sample


class GetItemDunderHook(StreamingDataset):
    """The other hook users write: transform in ``__getitem__``."""

    def __getitem__(self, at: Any) -> Any:
        sample = super().__getitem__(at)
        if isinstance(at, int):
            sample["hook"] = "__getitem__"
        return sample


HOOKS = {"get_item": GetItemHook, "__getitem__": GetItemDunderHook}


def as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collate that keeps the samples (picklable for spawn workers)."""
    return batch


@pytest.fixture
def counted_remote(tmp_path: Path) -> Path:
    out = tmp_path / "counted"
    with MDSWriter(out=str(out), columns={"id": "counted_int", "pad": "str"}, size_limit=400) as writer:
        for i in range(60):
            writer.write({"id": i, "pad": "p" * (i % 5)})
    return out


def check_decoded_once(samples: list[dict[str, Any]]) -> None:
    """Within each process, the decode ticks of the samples are consecutive: no hidden second decode."""
    by_pid: dict[int, list[int]] = {}
    for sample in samples:
        _, tick, pid = sample["id"]
        by_pid.setdefault(pid, []).append(tick)
    for ticks in by_pid.values():
        assert sorted(ticks) == list(range(min(ticks), min(ticks) + len(ticks)))


def ids(samples: list[dict[str, Any]]) -> list[int]:
    return [s["id"][0] for s in samples]


def make(cls: type[StreamingDataset], remote: Path, local: Path) -> StreamingDataset:
    return cls(remote=str(remote), local=str(local), batch_size=5, shuffle=True, shuffle_seed=3)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_applies_to_random_access(hook: str, counted_remote: Path, tmp_path: Path) -> None:
    ds = make(HOOKS[hook], counted_remote, tmp_path / "c")
    assert ds[7]["hook"] == hook and ds[7]["id"][0] == 7
    assert [s["hook"] for s in ds[[1, -1]]] == [hook, hook]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_applies_to_for_and_decodes_once(hook: str, counted_remote: Path, tmp_path: Path) -> None:
    expected = ids(list(make(StreamingDataset, counted_remote, tmp_path / "plain")))
    samples = list(make(HOOKS[hook], counted_remote, tmp_path / "c"))
    assert ids(samples) == expected
    assert {s["hook"] for s in samples} == {hook}
    check_decoded_once(samples)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_applies_to_async_for_and_decodes_once(hook: str, counted_remote: Path, tmp_path: Path) -> None:
    expected = ids(list(make(StreamingDataset, counted_remote, tmp_path / "plain")))
    ds = make(HOOKS[hook], counted_remote, tmp_path / "c")

    async def collect() -> list[dict[str, Any]]:
        return [sample async for sample in ds]

    samples = asyncio.run(collect())
    assert ids(samples) == expected
    assert {s["hook"] for s in samples} == {hook}
    check_decoded_once(samples)


@pytest.mark.parametrize(("hook", "context"), [("get_item", "fork"), ("__getitem__", "spawn")])
def test_hook_applies_in_dataloader_workers(
    hook: str, context: str, counted_remote: Path, tmp_path: Path
) -> None:
    ds = make(HOOKS[hook], counted_remote, tmp_path / "c")
    loader = StreamingDataLoader(
        ds, batch_size=5, num_workers=2, collate_fn=as_list, multiprocessing_context=context
    )
    samples = [s for batch in loader for s in batch]
    assert sorted(ids(samples)) == list(range(60))
    assert {s["hook"] for s in samples} == {hook}
    assert len({s["id"][2] for s in samples}) == 2  # both workers produced samples
    check_decoded_once(samples)


def test_plain_dataset_decodes_once_too(counted_remote: Path, tmp_path: Path) -> None:
    samples = list(make(StreamingDataset, counted_remote, tmp_path / "c"))
    assert "hook" not in samples[0]
    check_decoded_once(samples)
