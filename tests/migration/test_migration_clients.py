"""One storage client per process, event loop and settings, shared by every dataset and stream using it.

Counted with ``storage.shared.clients_built`` (clients this process has built, by kind). Each test sets
an ``AWS_*`` variable of its own: the environment the credential chain reads is part of a client's key,
so clients other tests' not-yet-collected datasets still hold are never shared with this test's.
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from astreaming import Stream, StreamingDataLoader, StreamingDataset
from astreaming.fetch.loop_thread import get_loop_thread
from astreaming.storage.shared import client_count, clients_built
from astreaming.testing.servers import MotoS3Server

from .conftest import BUCKET, MakeDataset

N = 60

Upload = Callable[[], str]


@pytest.fixture
def s3_dataset(s3_env: MotoS3Server, make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch) -> Upload:
    """Upload a fresh copy of a 60-sample dataset to moto; returns its s3:// URL."""
    monkeypatch.setenv("AWS_ASTREAMING_TEST_ISOLATION", uuid.uuid4().hex)
    local = make_dataset(N)

    def upload() -> str:
        prefix = f"clients/{uuid.uuid4().hex[:8]}"
        for path in sorted(local.rglob("*")):
            if path.is_file():
                s3_env.put_object(BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())
        return f"s3://{BUCKET}/{prefix}"

    return upload


def ids(samples: Any) -> list[int]:
    return [int(s["id"]) for s in samples]


def open_dataset(url: str, local: Path, **kw: Any) -> StreamingDataset:
    return StreamingDataset(remote=url, local=str(local), batch_size=5, **kw)


def test_two_datasets_and_two_streams_build_one_client(s3_dataset: Upload, tmp_path: Path) -> None:
    before = clients_built("s3")
    one = open_dataset(s3_dataset(), tmp_path / "one")
    two = StreamingDataset(
        streams=[
            Stream(remote=s3_dataset(), local=str(tmp_path / "a")),
            Stream(remote=s3_dataset(), local=str(tmp_path / "b")),
        ],
        batch_size=5,
    )
    try:
        assert ids(one) == list(range(N))  # every shard downloaded
        assert sorted(ids(two)) == sorted(list(range(N)) * 2)
        assert two[N + 3]["id"] == 3
        assert clients_built("s3") - before == 1  # indexes, shards and both streams: one client
        # One dataset closing leaves the client to the other: a third dataset on the endpoint reuses it.
        one.close()
        three = open_dataset(s3_dataset(), tmp_path / "three")
        assert ids(three) == list(range(N))
        assert clients_built("s3") - before == 1
        three.close()
    finally:
        one.close()
        two.close()
    # The last user closed it: the next dataset builds a new one, and works.
    again = open_dataset(s3_dataset(), tmp_path / "again")
    try:
        assert ids(again) == list(range(N))
        assert clients_built("s3") - before == 2
    finally:
        again.close()


def test_different_credentials_get_different_clients(
    s3_dataset: Upload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = clients_built("s3")
    url = s3_dataset()
    first = open_dataset(url, tmp_path / "first")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-key")  # moto accepts any key
    second = open_dataset(url, tmp_path / "second")
    try:
        assert ids(first) == ids(second) == list(range(N))
        assert clients_built("s3") - before == 2
    finally:
        first.close()
        second.close()


def test_close_closes_the_shared_client(s3_dataset: Upload, tmp_path: Path) -> None:
    gc.collect()  # datasets earlier tests dropped close their clients now, not during the counts below
    loop = get_loop_thread().loop
    ds = open_dataset(s3_dataset(), tmp_path / "c")
    try:
        open_now = client_count(loop)
        ds[0]
        assert client_count(loop) == open_now  # the shard fetches took the constructor's client
    finally:
        ds.close()
    assert client_count(loop) == open_now - 1


def test_async_for_on_one_loop_shares_one_client(s3_dataset: Upload, tmp_path: Path) -> None:
    one = open_dataset(s3_dataset(), tmp_path / "one")
    two = open_dataset(s3_dataset(), tmp_path / "two")
    before = clients_built("s3")

    async def both() -> tuple[list[int], list[int]]:
        first, second = aiter(one), aiter(two)
        # Both iterations hold their runtime (and its backend) from here on.
        head = (await anext(first), await anext(second))
        rest = [[s async for s in first], [s async for s in second]]
        return ids([head[0], *rest[0]]), ids([head[1], *rest[1]])

    try:
        assert asyncio.run(both()) == (list(range(N)), list(range(N)))
        assert clients_built("s3") - before == 1  # one on the test's loop, for both datasets
    finally:
        one.close()
        two.close()


def probe(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate into ids plus the worker's pid, the S3 clients it has built and the clients open in it."""
    return {"id": ids(batch), "pid": os.getpid(), "built": clients_built("s3"), "open": client_count()}


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_build_their_own(context: str, s3_dataset: Upload, tmp_path: Path) -> None:
    ds = open_dataset(s3_dataset(), tmp_path / "c")
    before = clients_built("s3")
    try:
        loader = StreamingDataLoader(
            ds, batch_size=5, num_workers=2, collate_fn=probe, multiprocessing_context=context
        )
        batches = list(loader)
        assert sorted(i for b in batches for i in b["id"]) == list(range(N))
        last = {b["pid"]: (b["built"], b["open"]) for b in batches}  # each worker's last batch
        assert len(last) == 2 and os.getpid() not in last
        # A worker builds its own client when it downloads (one may find every shard it reads already
        # fetched by the other), and holds no other: a forked one starts with an empty pool and counter,
        # where the parent's client (the constructor's, still open) would show as a second one.
        assert sorted(last.values()) in ([(0, 0), (1, 1)], [(1, 1), (1, 1)])
        assert clients_built("s3") == before  # the main process built nothing for them
    finally:
        ds.close()
