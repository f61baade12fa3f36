"""``Stream(backend=...)``: a backend injected like httpx's transport, in every process that reads.

The scheme ``mem://`` is registered nowhere, so a sample arrives only through the injected backend; each
process that used it leaves a file named by its pid.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from astreaming import Stream, StreamingDataLoader, StreamingDataset
from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.storage import backend_for

from .conftest import MakeDataset
from .injected_backend import PREFIX, factory

NUM = 60


@pytest.fixture
def served(make_dataset: MakeDataset, tmp_path: Path) -> tuple[Path, Path]:
    root = make_dataset(NUM, size_limit=300)
    calls = tmp_path / "calls"
    calls.mkdir()
    return root, calls


def dataset(served: tuple[Path, Path], tmp_path: Path, **kwargs: object) -> StreamingDataset:
    root, calls = served
    stream = Stream(remote=PREFIX, local=str(tmp_path / "cache"), backend=factory(str(root), str(calls)))
    return StreamingDataset(streams=[stream], batch_size=4, **kwargs)  # type: ignore[arg-type]


def test_the_scheme_is_served_only_by_injection() -> None:
    with pytest.raises(UnknownOptionError, match="mem://"):
        backend_for(PREFIX)


@pytest.mark.parametrize("cache_limit", [None, 7_000])
def test_iteration_and_random_access_use_the_injected_backend(
    served: tuple[Path, Path], tmp_path: Path, cache_limit: int | None
) -> None:
    ds = dataset(served, tmp_path, cache_limit=cache_limit)
    assert sorted(int(s["id"]) for s in ds) == list(range(NUM))
    assert int(ds[NUM - 1]["id"]) == NUM - 1
    assert os.listdir(served[1]) == [str(os.getpid())]
    if cache_limit is not None:  # shards evicted under the limit came back through the same backend
        assert ds.stats()["evictions"] > 0
    ds.close()


async def test_async_iteration_uses_the_injected_backend(served: tuple[Path, Path], tmp_path: Path) -> None:
    async with dataset(served, tmp_path) as ds:
        ids = sorted([int(s["id"]) async for s in ds])
    assert ids == list(range(NUM))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_make_their_own_backend(
    served: tuple[Path, Path], tmp_path: Path, context: str
) -> None:
    ds = dataset(served, tmp_path)
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    ids = sorted(int(i) for batch in loader for i in batch["id"])
    assert ids == list(range(NUM))
    # The index was read here at construction; the shards by the two workers.
    assert len(set(os.listdir(served[1])) - {str(os.getpid())}) == 2


def test_a_bad_backend_is_a_config_error(served: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend"):
        Stream(remote=PREFIX, backend="not callable")  # type: ignore[arg-type]
    stream = Stream(remote=PREFIX, local=str(tmp_path / "c"), backend=lambda root, timeout: object())
    with pytest.raises(ConfigError, match="not a Backend"):
        StreamingDataset(streams=[stream], batch_size=4)
