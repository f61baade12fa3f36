"""Plan artefacts shared through the cache directory: computed once per node, mapped by the others."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from astreaming.cache.plans import KEEP_BYTES, FilePlanStore
from astreaming.order import EpochSpec, World
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.weights import StreamWeights


def _never() -> dict[str, np.ndarray]:
    raise AssertionError("computed again although another process published it")


def _publish_in_child(root: str, key: str, ready: multiprocessing.synchronize.Event) -> None:
    FilePlanStore(Path(root)).get(key, lambda: {"ids": np.arange(10, dtype=np.int32), "x": np.ones(3)})
    ready.set()


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_an_artefact_published_by_one_process_is_mapped_by_another(tmp_path: Path, context: str) -> None:
    ctx = multiprocessing.get_context(context)
    ready = ctx.Event()
    child = ctx.Process(target=_publish_in_child, args=(str(tmp_path), "perm-abc", ready))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and ready.is_set()
    got = FilePlanStore(tmp_path).get("perm-abc", _never)
    assert got["ids"].tolist() == list(range(10)) and got["ids"].dtype == np.int32
    assert isinstance(got["ids"].base, np.memmap) and not got["ids"].flags.writeable  # mapped, read-only
    assert got["x"].tolist() == [1.0, 1.0, 1.0]


def test_the_producer_uses_a_small_artefact_as_computed_and_maps_a_large_one(tmp_path: Path) -> None:
    store = FilePlanStore(tmp_path)
    small = {"ids": np.arange(10, dtype=np.int32)}
    got = store.get("small", lambda: small)
    # Not mapped back from the file it just wrote (a file open per array on a cold resume's path)...
    assert not isinstance(got["ids"].base, np.memmap) and got["ids"].base is small["ids"]
    assert not got["ids"].flags.writeable  # ...but read-only, as a mapped one is
    large = {"ids": np.arange(KEEP_BYTES // 8 + 1, dtype=np.int64)}
    got = store.get("large", lambda: large)
    assert isinstance(got["ids"].base, np.memmap)  # the node's shared pages, not a private copy
    assert np.array_equal(got["ids"], large["ids"])
    # Published whole either way: another process maps both.
    other = FilePlanStore(tmp_path)
    assert other.get("small", _never)["ids"].tolist() == list(range(10))
    assert np.array_equal(other.get("large", _never)["ids"], large["ids"])


def test_a_dead_producers_temp_directory_is_removed_and_the_artefact_computed(tmp_path: Path) -> None:
    leftover = tmp_path / "perm-abc.tmp-99999-dead"
    leftover.mkdir()
    (leftover / "ids.npy").write_bytes(b"half written")
    got = FilePlanStore(tmp_path).get("perm-abc", lambda: {"ids": np.arange(4)})
    assert got["ids"].tolist() == [0, 1, 2, 3]
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perm-abc"]  # the lock file goes too


def test_discard_removes_the_artefact_but_mapped_copies_stay_readable(tmp_path: Path) -> None:
    store = FilePlanStore(tmp_path)
    first = store.get("k", lambda: {"ids": np.arange(5)})
    store.discard("k")
    assert not (tmp_path / "k").exists()
    assert first["ids"].tolist() == [0, 1, 2, 3, 4]
    assert store.get("k", lambda: {"ids": np.arange(2)})["ids"].tolist() == [0, 1]


def test_an_unusable_cache_directory_keeps_artefacts_in_the_process(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = FilePlanStore(blocker / "plans")  # mkdir fails: its parent is a file
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"ids": np.arange(3)}

    assert store.get("k", compute)["ids"].tolist() == [0, 1, 2]
    assert store.get("k", compute)["ids"].tolist() == [0, 1, 2]
    assert calls == [1]


def test_the_store_pickles_without_its_private_state(tmp_path: Path) -> None:
    import pickle

    store = FilePlanStore(tmp_path)
    store.get("k", lambda: {"ids": np.arange(2)})
    clone = pickle.loads(pickle.dumps(store))
    assert clone.root == tmp_path
    assert clone.get("k", _never)["ids"].tolist() == [0, 1]


def test_artefacts_untouched_for_days_are_removed(tmp_path: Path) -> None:
    from astreaming.cache import plans

    store = FilePlanStore(tmp_path)
    store.get("old", lambda: {"ids": np.arange(2)})
    store.get("new", lambda: {"ids": np.arange(2)})
    days_ago = time.time() - plans.STALE_AFTER - 60
    os.utime(tmp_path / "old", (days_ago, days_ago))
    FilePlanStore(tmp_path).get("other", lambda: {"ids": np.arange(1)})  # a new process sweeps once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "other"]


def test_an_artefact_read_recently_is_not_swept_however_old(tmp_path: Path) -> None:
    from astreaming.cache import plans

    reader = FilePlanStore(tmp_path)
    reader.get("k", lambda: {"ids": np.arange(2)})  # published (and this process's sweep done)
    days_ago = time.time() - plans.STALE_AFTER - 60
    os.utime(tmp_path / "k", (days_ago, days_ago))  # published days ago: a long epoch
    assert reader.get("k", _never)["ids"].tolist() == [0, 1]  # still read
    FilePlanStore(tmp_path).get("other", lambda: {"ids": np.arange(1)})  # a new process sweeps
    assert (tmp_path / "k").is_dir()


def _wait_for_artefact(root: str, key: str, started: multiprocessing.synchronize.Event) -> None:
    started.set()
    got = FilePlanStore(Path(root)).get(key, _never)  # blocks on the producer's lock, then maps
    assert got["x"].tolist() == [1.0, 2.0]


def test_a_lock_is_released_although_a_process_forked_while_it_was_held_lives_on(tmp_path: Path) -> None:
    # A process forked while the producer holds its lock shares the locked descriptor: closing the
    # producer's copy alone would keep every waiter blocked until that child exits.
    fork = multiprocessing.get_context("fork")
    started, release = fork.Event(), fork.Event()
    children: list[multiprocessing.process.BaseProcess] = []

    def compute() -> dict[str, np.ndarray]:
        children.append(
            fork.Process(target=_wait_for_artefact, args=(str(tmp_path), "k", started), daemon=True)
        )
        children[-1].start()
        assert started.wait(60)
        # Lives on with the descriptor until released.
        children.append(fork.Process(target=release.wait, args=(300,), daemon=True))
        children[-1].start()
        return {"x": np.array([1.0, 2.0])}

    try:
        FilePlanStore(tmp_path).get("k", compute)
        waiter, keeper = children
        waiter.join(120)
        assert waiter.exitcode == 0 and keeper.is_alive()
    finally:
        release.set()
        for child in children:
            child.join(60)
            if child.is_alive():  # a waiter still blocked (the failure this test catches): end it
                child.kill()
                child.join(60)


# -- a discard racing a reader (issue 8: KeyError in a DataLoader worker under the cache soak) ----------


def _in_another_process(target: Callable[..., object], *args: object) -> None:
    """Run ``target(*args)`` in a forked process (another worker of the node) and wait for it."""
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join(120)
    assert child.exitcode == 0


def _race_the_first_listing(
    monkeypatch: pytest.MonkeyPatch, root: Path, other: Callable[[], None]
) -> list[int]:
    """Make the first listing of a directory under ``root`` a reader preempted between opening the
    directory and reading its entries, while ``other`` runs: on a loaded machine a worker is preempted
    there, and another worker discards the artefact (rename, then delete) in between. Returns a list
    that holds one item once the race was staged."""
    listdir = os.listdir
    staged: list[int] = []

    def listing(path: int | str | os.PathLike[str] = ".") -> list[str]:
        fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if not staged and Path(os.readlink(f"/proc/self/fd/{fd}")).parent == root.resolve():
                staged.append(1)  # before other(): its process inherits this list
                other()
            return listdir(fd)
        finally:
            if fd is not path:
                os.close(fd)

    monkeypatch.setattr(os, "listdir", listing)
    return staged


def test_an_artefact_discarded_while_it_is_listed_is_never_returned_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix the reader got ``{}`` (the directory's entries, read after the discard deleted
    them) and its ``["perm"]`` raised KeyError."""
    FilePlanStore(tmp_path).get("k", lambda: {"perm": np.arange(5)})
    staged = _race_the_first_listing(
        monkeypatch, tmp_path, lambda: _in_another_process(_discard, str(tmp_path), "k")
    )
    got = FilePlanStore(tmp_path).get("k", lambda: {"perm": np.arange(5)})
    assert staged  # the race happened
    assert got["perm"].tolist() == [0, 1, 2, 3, 4]


def _discard(root: str, key: str) -> None:
    FilePlanStore(Path(root)).discard(key)


def _spec() -> EpochSpec:
    return EpochSpec.build(
        [[40] * 25],
        weights=[StreamWeights()],
        batch_size=4,
        num_nodes=1,
        num_canonical_nodes=1,
        shuffle=True,
        shuffle_algo="py1e",
        shuffle_seed=17,
        shuffle_block_size=80,
        batching_method="random",
    )


def _run_plan_to_its_end(root: str, worker: int) -> None:
    # A plan iterated to its end discards the epoch's shuffle artefacts (LazyWorkerPlan.__iter__).
    list(LazyWorkerPlan(_spec(), World.from_rank(1, 1, 2, 0, worker), 0, store=FilePlanStore(Path(root))))


def test_a_worker_starting_its_epoch_while_another_ends_it_gets_its_whole_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's failure through the plan: DataLoader worker 1 of a node published the epoch's shuffle
    draws and ran its plan to its end (under a cache_limit the walk's look-ahead does that right after
    its first batch), discarding them while worker 0 was reading them. Before the fix worker 0's plan
    raised ``KeyError: 'warned'`` (its draws were an empty dict)."""
    spec, world = _spec(), World.from_rank(1, 1, 2, 0, 0)
    want = LazyWorkerPlan(spec, world, 0).sample_ids()  # the same plan in a private store
    LazyWorkerPlan(spec, World.from_rank(1, 1, 2, 0, 1), 0, store=FilePlanStore(tmp_path))  # publishes
    staged = _race_the_first_listing(
        monkeypatch, tmp_path, lambda: _in_another_process(_run_plan_to_its_end, str(tmp_path), 1)
    )
    got = LazyWorkerPlan(spec, world, 0, store=FilePlanStore(tmp_path)).sample_ids()
    assert staged
    assert got.tolist() == want.tolist() and len(got) == 500
