"""Batch groups from a remote reached over the network: groups while the shards are ready, never a
batch held behind a download.

A ``StreamingDataLoader`` worker sends its batches several at a time (``batched.Group``). It adds batches
to a group only while their shards are ready or published in the cache: before it waits for a download it
sends what it holds. The loader hands the batches out in torch's per-batch order whatever the groups'
sizes (``batched.ungroup``). Against real HTTP servers and real DataLoader workers (fork and spawn):

- a stalled download does not hold back batches already made, nor another worker's error;
- a remote dataset read from a full cache gets full groups, and the batches of a plain DataLoader;
- a cold epoch whose downloads cut groups short gives the batches of the same loader without groups.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from torch.utils.data import DataLoader

import astreaming.dataloader
from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset
from astreaming.batched import Group, group_sizes, ungroup
from astreaming.collate import collate
from astreaming.errors import FormatError, ObjectNotFound
from astreaming.testing.servers import StaticHTTPServer

from .test_batched import assert_same_batches

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")

COLUMNS = {"id": "int", "text": "str", "blob": "bytes", "x": "float32"}


def write(out: Path, n: int, size_limit: int) -> Path:
    """Small samples (a few dozen bytes), ``size_limit`` bytes a shard."""
    with MDSWriter(out=str(out), columns=COLUMNS, size_limit=size_limit) as w:
        for i in range(n):
            w.write({"id": i, "text": f"sample-{i}", "blob": bytes(i % 11), "x": np.float32(i) / 7})
    return out


def shard_files(root: Path, first: int = 0, end: int | None = None) -> frozenset[str]:
    """The file names of the shards holding samples ``first`` to ``end`` (excluded; None: the last)."""
    index = json.loads((root / "index.json").read_text())
    names, start = [], 0
    for shard in index["shards"]:
        stop = start + shard["samples"]
        if stop > first and (end is None or start < end):
            names.append(shard["raw_data"]["basename"])
        start = stop
    return frozenset(names)


class GatedServer:
    """Serves ``root`` over http://127.0.0.1 (its own thread and loop). A file named in ``held`` is
    answered only once :meth:`open_gate` was called (or the server stops); one in ``missing`` is a 404."""

    def __init__(self, root: Path, held: frozenset[str], missing: frozenset[str] = frozenset()) -> None:
        self.root, self.held, self.missing = root, held, missing
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._gate: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gated-http", daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = self.root / request.path.lstrip("/")
        if path.name in self.held:
            assert self._gate is not None
            await self._gate.wait()
        if path.name in self.missing or not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> web.AppRunner:
            self._gate = asyncio.Event()
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            return runner

        runner = self._loop.run_until_complete(start())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def open_gate(self) -> None:
        """Answer the held files (those waiting and those to come)."""
        assert self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)

    def __enter__(self) -> GatedServer:
        self._thread.start()
        assert self._started.wait(20), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.open_gate()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class ItemSpy:
    """Records the groups the inner loader yields to ``ungroup`` (worker, round, batches in it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.groups: list[tuple[int, int, int]] = []
        self.others = 0

        def spy(items: Iterator[Any], *args: Any) -> Iterator[Any]:
            return ungroup(self._record(items), *args)

        monkeypatch.setattr(astreaming.dataloader, "ungroup", spy)

    def _record(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Group):
                self.groups.append((item.worker, item.round, len(item.batches)))
            else:
                self.others += 1
            yield item

    def take(self) -> list[tuple[int, int, int]]:
        groups, self.groups, self.others = self.groups, [], 0
        return groups


def cut_short(groups: list[tuple[int, int, int]], size: int) -> list[tuple[int, int, int]]:
    """The groups with fewer batches than ``group_sizes(size)`` gives for their round (1, 2, 4, ... up to
    ``size``) that are not their worker's last."""
    last = {w: max(r for v, r, _ in groups if v == w) for w, _, _ in groups}
    planned = list(itertools.islice(group_sizes(size), max(last.values(), default=0) + 1))
    return [(w, r, n) for w, r, n in groups if n < planned[r] and r != last[w]]


def test_a_download_wait_holds_back_neither_the_batches_made_nor_another_workers_error(
    tmp_path: Path,
) -> None:
    """Worker 0 made batch 0, then needs a shard the server holds until the main process has batch 0;
    worker 1's shard is missing. Worker 0 must send batch 0 before it waits, then worker 1's
    ObjectNotFound comes (torch hands batches out in order). Held behind the wait, batch 0 would wait
    for the shard it releases: a deadlock until the download timeout (then, in the clean-clone CI run
    that found it, the error was that timeout)."""
    root = write(tmp_path / "site" / "ds", 40, size_limit=100)  # one sample a shard
    # Persistent workers: no batch from the main process (lead_batch); worker 0 walks batches 0, 2, ...
    # and worker 1 batches 1, 3, ... (4 samples each, no shuffle).
    held = shard_files(root, 8, 12)  # worker 0's second batch
    missing = shard_files(root, 4, 8)  # worker 1's first batch
    assert len(held) == len(missing) == 4 and not held & shard_files(root, 0, 4)
    with GatedServer(tmp_path / "site", held=held, missing=missing) as server:
        ds = StreamingDataset(
            remote=f"{server.url}/ds",
            local=str(tmp_path / "cache"),
            batch_size=4,
            download_retry=0,
            download_timeout=3600,  # longer than the test's own timeout: no way out but the early send
        )
        loader = StreamingDataLoader(
            ds, batch_size=4, num_workers=2, multiprocessing_context="fork", persistent_workers=True
        )
        view: Any = loader._batched_loader().dataset  # type: ignore[union-attr]
        assert view._group > 4  # worker 0 could hold all its batches in one group
        got: list[list[int]] = []
        with pytest.raises(ObjectNotFound, match=r"shard\.0000[4-7]\.mds"):
            for batch in loader:
                got.append(batch["id"].tolist())
                server.open_gate()
        assert got == [[0, 1, 2, 3]]
        ds.close()


def test_the_batches_made_before_an_error_come_first(tmp_path: Path) -> None:
    """A local dataset (groups of 16): worker 0 makes batches 0 and 2, then finds shard 16 corrupt. Its
    two batches must come, in torch's order with worker 1's, before the error."""
    root = write(tmp_path / "ds", 40, size_limit=100)  # one sample a shard
    (corrupt,) = shard_files(root, 16, 17)  # worker 0's third batch
    path = root / corrupt
    path.write_bytes(b"\xff" * path.stat().st_size)
    ds = StreamingDataset(local=str(root), batch_size=4)
    loader = StreamingDataLoader(
        ds, batch_size=4, num_workers=2, multiprocessing_context="fork", persistent_workers=True
    )
    assert loader._batched_loader().dataset._group == 16  # type: ignore[union-attr]
    got: list[list[int]] = []
    with pytest.raises(FormatError, match=re.escape(corrupt)):
        for batch in loader:
            got.append(batch["id"].tolist())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    ds.close()


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_remote_read_from_a_full_cache_sends_full_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    """The second epoch of a remote dataset (and a new dataset over the same, full cache) reads no byte
    over the network: its workers send groups as large as their round allows, and the batches are a
    plain DataLoader's."""
    monkeypatch.setattr(astreaming.dataloader, "GROUP_MAX", 3)
    write(tmp_path / "site" / "ds", 257, size_limit=3_000)
    spy = ItemSpy(monkeypatch)
    with StaticHTTPServer(tmp_path / "site") as server:

        def dataset() -> StreamingDataset:
            return StreamingDataset(
                remote=f"{server.url}/ds", local=str(tmp_path / "cache"), batch_size=5, shuffle=True
            )

        kwargs: dict[str, Any] = {"batch_size": 5, "num_workers": 2, "multiprocessing_context": context}
        ds = dataset()
        loader = StreamingDataLoader(ds, **kwargs)
        cold = list(loader)
        spy.take()
        warm = list(loader)  # the second epoch: fresh workers, every shard in the cache
        warm_groups = spy.take()
        again = dataset()  # a new dataset (a new job) over the full cache
        fresh = list(StreamingDataLoader(again, **kwargs))
        fresh_groups = spy.take()
        reference = dataset()
        plain = DataLoader(reference, collate_fn=collate, **kwargs)
        first, second = list(plain), list(plain)
        for groups in (warm_groups, fresh_groups):
            assert {w for w, _, _ in groups} == {0, 1}
            assert max(n for _, _, n in groups) == 3
            assert cut_short(groups, 3) == []  # every group as large as its round allows, but the last
        assert_same_batches(cold, first)
        assert_same_batches(warm, second)
        assert_same_batches(fresh, first)
        assert ds.stats()["bytes_downloaded"] > 0 and again.stats()["bytes_downloaded"] == 0
        for d in (ds, again, reference):
            d.close()


def test_a_cold_epoch_gives_the_batches_of_the_loader_without_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards past the first 12 samples are held until the main process has its second batch: each worker must
    send its first group before it is full (waiting would hold it forever). The groups' sizes then vary
    with the downloads; the batches must not."""
    root = write(tmp_path / "site" / "ds", 240, size_limit=400)
    spy = ItemSpy(monkeypatch)

    def run(group_max: int, cache: str) -> list[Any]:
        monkeypatch.setattr(astreaming.dataloader, "GROUP_MAX", group_max)
        with GatedServer(tmp_path / "site", held=held) as server:
            ds = StreamingDataset(remote=f"{server.url}/ds", local=str(tmp_path / cache), batch_size=4)
            loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
            batches = []
            for batch in loader:
                batches.append(batch)
                if len(batches) == 2:
                    server.open_gate()
            ds.close()
        return batches

    # Served: the shards of the first 12 samples (3 batches); no worker fills a group of 8 from them.
    held = shard_files(root) - shard_files(root, 0, 12)
    assert held and not held & shard_files(root, 0, 12)
    grouped = run(8, "grouped")
    groups = spy.take()
    assert cut_short(groups, 8)  # sent before full: the next batch waited for a held shard
    single = run(1, "single")
    assert spy.take() == []  # groups off: batches one by one
    assert_same_batches(grouped, single)
    ids = [i for b in grouped for i in b["id"].tolist()]
    assert sorted(ids) == list(range(240))


def _torch_items(batches: dict[int, list[str]], sizes: dict[int, list[int]]) -> list[Group]:
    """The groups in the order torch hands out its workers' items: round-robin, a worker that ran out
    skipped."""
    groups: dict[int, list[Group]] = {}
    for w, cuts in sizes.items():
        start, groups[w] = 0, []
        for r, n in enumerate(cuts):
            groups[w].append(Group(w, r, batches[w][start : start + n]))
            start += n
        assert start == len(batches[w])
    out: list[Group] = []
    for r in range(max(len(g) for g in groups.values())):
        out.extend(g[r] for g in groups.values() if r < len(g))
    return out


def _round_robin(batches: dict[int, list[str]]) -> list[str]:
    out: list[str] = []
    for j in range(max(len(b) for b in batches.values())):
        out.extend(b[j] for b in batches.values() if j < len(b))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_ungroup_restores_torchs_order_whatever_the_groups_sizes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    workers = int(rng.integers(1, 5))
    batches = {w: [f"w{w}b{j}" for j in range(int(rng.integers(0, 30)))] for w in range(workers)}
    sizes: dict[int, list[int]] = {}
    for w, mine in batches.items():
        left, sizes[w] = len(mine), []
        while left:
            n = int(rng.integers(1, min(left, 6) + 1))
            sizes[w].append(n)
            left -= n
    items = _torch_items(batches, sizes)
    assert list(ungroup(iter(items), workers)) == _round_robin(batches)


def test_ungroup_tells_the_pace_the_slowest_running_workers_count() -> None:
    class Noted:
        lead = 0

        def __init__(self) -> None:
            self.values: list[int] = []

        def note_slowest(self, received: int) -> None:
            self.values.append(received)

    # Worker 0: 8 batches in groups of 3, 3, 1, 1; worker 1: 2 batches in groups of 1, 1.
    batches = {0: [f"w0b{j}" for j in range(8)], 1: ["w1b0", "w1b1"]}
    items = _torch_items(batches, {0: [3, 3, 1, 1], 1: [1, 1]})
    noted = Noted()
    got = list(ungroup(iter(items), 2, True, noted))  # type: ignore[arg-type]
    assert got == _round_robin(batches)
    # 0 at the start, then the smaller count after each item: w0 3, w1 1, w0 6, w1 2, w0 7. Worker 1 has
    # run out once w0's fourth item comes before a third of its own: then worker 0 alone counts.
    assert noted.values == [0, 0, 1, 1, 2, 2, 8]


def test_a_worker_sends_what_it_holds_before_a_download_and_before_an_error() -> None:
    from astreaming.batched import grouped
    from astreaming.engine.iterate import DOWNLOAD_WAIT

    def batches(error: Exception | None) -> Iterator[Any]:
        yield from ["b0", "b1", DOWNLOAD_WAIT, DOWNLOAD_WAIT, "b2", "b3", "b4", "b5", "b6"]
        if error is not None:
            raise error

    got = list(grouped(batches(None), 1, 3, None))  # groups of 1, 2, then 3 at most
    assert [(g.worker, g.round, g.batches) for g in got] == [
        (1, 0, ["b0"]),
        (1, 1, ["b1"]),  # sent before the download
        (1, 2, ["b2", "b3", "b4"]),
        (1, 3, ["b5", "b6"]),
    ]
    made = grouped(batches(ObjectNotFound("shard 9 is missing")), 0, 4, None)
    assert next(made).batches == ["b0"]
    assert next(made).batches == ["b1"]
    assert next(made).batches == ["b2", "b3", "b4", "b5"]
    assert next(made).batches == ["b6"]  # made before the error: sent first
    with pytest.raises(ObjectNotFound, match="shard 9"):
        next(made)


def test_a_worker_ahead_of_the_pace_sends_one_batch_at_a_time() -> None:
    from astreaming.batched import grouped

    class Fixed:
        def __init__(self, allowance: int) -> None:
            self.value = allowance

        def allowance(self) -> int:
            return self.value

    pace = Fixed(5)
    made = grouped(iter([f"b{j}" for j in range(12)]), 0, 4, pace)  # type: ignore[arg-type]
    assert next(made).batches == ["b0"]  # groups of 1, 2, then 4 at most
    assert next(made).batches == ["b1", "b2"]
    assert next(made).batches == ["b3", "b4"]  # 5 allowed
    assert next(made).batches == ["b5"]  # at least one a group
    pace.value = 20
    assert [g.batches for g in made] == [["b6", "b7", "b8", "b9"], ["b10", "b11"]]
