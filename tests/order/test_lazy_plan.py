"""The lazy plan (chunks, windows, shared artefacts) yields exactly the eager plan's sample ids."""

from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError
from astreaming.order import EpochSpec, World, get_shuffle, plan_worker_epoch
from astreaming.order import perm as perm_module
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.shuffle.py1e_lazy import py1e_draws, py1e_slots
from astreaming.order.store import MemoryStore
from astreaming.order.weights import StreamWeights

from ._stores import CountingStore

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # specs whose streams choose 0 samples
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALGOS = ("naive", "py1s", "py2s", "py1br", "py1e")
METHODS = ("random", "stratified", "per_stream", "device_per_stream")


@SETTINGS
@given(
    units=st.lists(st.integers(0, 40), min_size=1, max_size=10),
    ncn=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    epoch=st.integers(0, 4),
    block=st.integers(1, 80),
    data=st.data(),
)
def test_py1e_windows_equal_the_full_sort(
    units: list[int], ncn: int, seed: int, epoch: int, block: int, data: st.DataObject
) -> None:
    assume(sum(units) >= ncn)
    full = get_shuffle("py1e", units, ncn, seed, epoch, block)
    draws = py1e_draws(units, ncn, seed, epoch, block)
    bounds = draws["node_bounds"]
    for node in range(ncn):
        size = int(bounds[node + 1] - bounds[node])
        first = data.draw(st.integers(0, size - 1))
        stop = data.draw(st.integers(first + 1, size))
        expected = full[bounds[node] + first : bounds[node] + stop]
        assert np.array_equal(py1e_slots(draws, node, first, stop), expected)


def _spec(
    sizes: list[list[int]],
    weights: list[StreamWeights],
    method: str,
    algo: str,
    ncn: int,
    nodes: int,
    **kw: int,
) -> EpochSpec:
    return EpochSpec.build(
        sizes,
        weights=weights,
        batch_size=kw["batch"],
        num_nodes=nodes,
        num_canonical_nodes=ncn,
        shuffle=bool(kw["shuffle"]),
        shuffle_algo=algo,
        shuffle_seed=kw["seed"],
        shuffle_block_size=kw["block"],
        batching_method=method,
    )


weights_st = st.one_of(
    st.just(StreamWeights()),
    st.builds(lambda r: StreamWeights(repeat=r), st.sampled_from((0.5, 1.5, 2.0))),
    st.builds(lambda c: StreamWeights(choose=c), st.integers(3, 40)),
)


@SETTINGS
@given(
    sizes=st.lists(st.lists(st.integers(1, 20), min_size=1, max_size=4), min_size=1, max_size=3),
    weights=st.lists(weights_st, min_size=3, max_size=3),
    method=st.sampled_from(METHODS),
    algo=st.sampled_from(ALGOS),
    world=st.sampled_from(((1, 1, 1), (1, 2, 2), (2, 1, 2), (2, 2, 1), (1, 1, 3))),
    ncn_factor=st.sampled_from((1, 2)),
    batch=st.integers(1, 4),
    shuffle=st.booleans(),
    seed=st.integers(0, 1000),
    block=st.integers(4, 40),
    epoch=st.integers(0, 2),
    resume=st.floats(0, 1),
    chunk=st.integers(1, 9),
    # (GRID, CELL): the defaults (small worlds then only read cells and whole py1br blocks), or tiny
    # ones, so a plan crosses py1e's cells and windows and py1br's blocks.
    windows=st.sampled_from(((perm_module.GRID, perm_module.CELL), (8, 4))),
)
def test_lazy_plan_equals_the_eager_plan(
    sizes: list[list[int]],
    weights: list[StreamWeights],
    method: str,
    algo: str,
    world: tuple[int, int, int],
    ncn_factor: int,
    batch: int,
    shuffle: bool,
    seed: int,
    block: int,
    epoch: int,
    resume: float,
    chunk: int,
    windows: tuple[int, int],
) -> None:
    with mock.patch.multiple(perm_module, GRID=windows[0], CELL=windows[1]):
        _lazy_equals_eager(
            sizes, weights, method, algo, world, ncn_factor, batch, shuffle, seed, block, epoch, resume, chunk
        )


def _lazy_equals_eager(
    sizes: list[list[int]],
    weights: list[StreamWeights],
    method: str,
    algo: str,
    world: tuple[int, int, int],
    ncn_factor: int,
    batch: int,
    shuffle: bool,
    seed: int,
    block: int,
    epoch: int,
    resume: float,
    chunk: int,
) -> None:
    nodes, ranks, workers = world
    try:
        spec = _spec(
            sizes,
            weights[: len(sizes)],
            method,
            algo,
            nodes * ncn_factor,
            nodes,
            batch=batch,
            shuffle=shuffle,
            seed=seed,
            block=block,
        )
    except ConfigError:
        assume(False)
        return
    # Resumption anywhere, including the last sample and the end of the epoch.
    sample_in_epoch = min(int(resume * (spec.epoch_size + 1)), spec.epoch_size)
    store = MemoryStore()
    for index in range(nodes * ranks * workers):
        node, rest = divmod(index, ranks * workers)
        w = World.from_rank(nodes, ranks, workers, node * ranks + rest // workers, rest % workers)
        try:
            eager = plan_worker_epoch(spec, w, epoch, sample_in_epoch).sample_ids
        except (ConfigError, ValueError) as exc:
            with pytest.raises(type(exc)):
                LazyWorkerPlan(spec, w, epoch, sample_in_epoch, store=store, chunk=chunk).sample_ids()
            return
        lazy = LazyWorkerPlan(spec, w, epoch, sample_in_epoch, store=store, chunk=chunk)
        assert np.array_equal(lazy.sample_ids(), eager)
        assert all(len(c) for c in lazy)


def test_windowed_py1e_plan_spans_windows_and_discards_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perm_module, "GRID", 16)
    spec = EpochSpec.build(
        [[37, 50, 21, 45]],
        batch_size=4,
        num_nodes=1,
        num_canonical_nodes=2,
        shuffle=True,
        shuffle_block_size=12,
    )
    world = World(1, 1, 2, 1)

    store = CountingStore()
    for resume in (0, 1, 60, 151, 152):
        eager = plan_worker_epoch(spec, world, 1, resume).sample_ids
        plan = LazyWorkerPlan(spec, world, 1, resume, store=store, chunk=8)
        assert np.array_equal(plan.sample_ids(), eager)
    assert store.discarded  # windows behind the consumer were dropped


def test_lazy_plan_warns_like_mosaic_about_small_blocks() -> None:
    spec = EpochSpec.build([[30, 30]], batch_size=2, num_nodes=1, shuffle=True, shuffle_block_size=8)
    with warnings.catch_warnings(record=True) as eager:
        warnings.simplefilter("always")
        get_shuffle("py1e", [30, 30], 1, spec.shuffle_seed, 0, 8)  # mosaic warns once per shuffle
    with warnings.catch_warnings(record=True) as lazy:
        warnings.simplefilter("always")
        LazyWorkerPlan(spec, World(1, 1, 1, 0), 0).sample_ids()
    assert [str(w.message) for w in lazy] == [str(w.message) for w in eager]
    assert eager


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_and_method_resumes_at_the_first_last_and_past_the_last_sample(
    algo: str, method: str
) -> None:
    spec = _spec(
        [[7, 9, 5, 8], [6, 6, 1]],
        [StreamWeights(repeat=1.5), StreamWeights(choose=10)],
        method,
        algo,
        2,
        1,
        batch=4,
        shuffle=1,
        seed=42,
        block=12,
    )
    store = MemoryStore()
    for sample_in_epoch in (0, 1, spec.epoch_size - 1, spec.epoch_size):
        for worker in range(2):
            world = World(1, 1, 2, worker)
            eager = plan_worker_epoch(spec, world, 1, sample_in_epoch).sample_ids
            lazy = LazyWorkerPlan(spec, world, 1, sample_in_epoch, store=store, chunk=3).sample_ids()
            assert np.array_equal(lazy, eager), (sample_in_epoch, worker)
