"""A typed error raised in a StreamingDataLoader worker reaches the main process whole: the same type,
message and attributes (torch alone would re-raise a copy built from the message, ``url`` None), with
the worker's traceback as a note, after the batches torch would have handed out before it."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astreaming import MDSWriter, ObjectNotFound, StreamingDataLoader, StreamingDataset
from astreaming.carried import CarriedError, carry_errors
from astreaming.errors import AstreamingError, TransientStorageError
from astreaming.testing.servers import StaticHTTPServer

SAMPLES = 400


def _write(out: Path) -> None:
    with MDSWriter(out=str(out), columns={"id": "int", "pad": "str"}, size_limit=1_500) as writer:
        for i in range(SAMPLES):
            writer.write({"id": i, "pad": "x" * 40})


@pytest.fixture
def broken_remote(tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    """An HTTP remote whose last shard is gone (a 404): its URL, the missing shard's name, and a
    ``cache_limit`` with room for 5 of its shards."""
    source = tmp_path / "site" / "data"
    _write(source)
    shards = sorted(source.glob("shard.*.mds"))
    assert len(shards) >= 8
    limit = (source / "index.json").stat().st_size + 5 * max(p.stat().st_size for p in shards)
    shards[-1].unlink()
    with StaticHTTPServer(tmp_path / "site") as server:
        yield f"{server.url}/data", shards[-1].name, limit


@pytest.mark.parametrize("limited", [False, True], ids=["no-limit", "cache_limit"])
@pytest.mark.parametrize("context", ["fork", "spawn"])
@pytest.mark.parametrize(
    ("batch_size", "timeout"),
    [(4, 0.0), (4, 120.0), (None, 0.0)],
    ids=["batches-grouped", "batches-one-by-one", "samples"],
)
def test_a_workers_storage_error_arrives_with_its_url(
    broken_remote: tuple[str, str, int],
    tmp_path: Path,
    context: str,
    batch_size: int | None,
    timeout: float,
    limited: bool,
) -> None:
    remote, missing, limit = broken_remote
    cache_limit = limit if limited else None
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=4, cache_limit=cache_limit)
    loader = StreamingDataLoader(
        ds, batch_size=batch_size, num_workers=2, multiprocessing_context=context, timeout=timeout
    )
    seen = 0
    try:
        with pytest.raises(ObjectNotFound) as info:
            for item in loader:
                seen += len(item["id"]) if batch_size else 1
    finally:
        ds.close()
    error = info.value
    assert error.url == f"{remote}/{missing}"  # torch's copy would hold None
    assert missing in str(error) and not str(error).startswith("Caught")
    notes = getattr(error, "__notes__", [])
    assert any(note.startswith("Raised in DataLoader worker process ") for note in notes)
    assert any("Traceback (most recent call last)" in note for note in notes)
    assert 0 < seen < SAMPLES


def test_carry_errors_passes_items_then_ends_with_the_error() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise TransientStorageError("s3://b/k: slow down", url="s3://b/k", retry_after=2.5)

    out = list(carry_errors(items(), worker=3))
    assert out[:2] == [1, 2] and isinstance(out[2], CarriedError) and len(out) == 3
    copy = pickle.loads(pickle.dumps(out[2])).error  # as the main process gets it
    assert type(copy) is TransientStorageError
    assert (copy.url, copy.retry_after, str(copy)) == ("s3://b/k", 2.5, "s3://b/k: slow down")
    assert copy.__notes__[0].startswith("Raised in DataLoader worker process 3:")


def test_carry_errors_leaves_other_errors_and_unpicklable_ones_to_torch() -> None:
    def failing(error: BaseException) -> Iterator[int]:
        yield 1
        raise error

    with pytest.raises(ZeroDivisionError):
        list(carry_errors(failing(ZeroDivisionError("a user's collate")), worker=0))

    class Unpicklable(AstreamingError):
        def __init__(self, message: str, handle: Any) -> None:  # the copy could not be rebuilt
            super().__init__(message)
            self.handle = handle

    with pytest.raises(Unpicklable):
        list(carry_errors(failing(Unpicklable("x", lambda: None)), worker=0))
