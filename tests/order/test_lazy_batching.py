"""The lazy stratified, per_stream and device_per_stream batching: equal to the eager epoch array at any
batches asked for, and bounded in memory (what a worker reads, not the epoch)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError
from astreaming.order import EpochSpec, World, generate_work
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.store import MemoryStore
from astreaming.order.weights import StreamWeights

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # specs whose streams choose 0 samples
]
METHODS = ("stratified", "per_stream", "device_per_stream")

weights_st = st.one_of(
    st.just(StreamWeights()),
    st.builds(lambda r: StreamWeights(repeat=r), st.sampled_from((0.5, 1.5, 2.0))),
    st.builds(lambda c: StreamWeights(choose=c), st.integers(3, 60)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=5), min_size=1, max_size=4),
    weights=st.lists(weights_st, min_size=4, max_size=4),
    method=st.sampled_from(METHODS),
    algo=st.sampled_from(("naive", "py1s", "py2s", "py1br", "py1e")),
    world=st.sampled_from(((1, 1, 1), (1, 2, 3), (2, 1, 2), (2, 2, 2), (3, 1, 2), (4, 2, 1))),
    ncn=st.sampled_from((1, 2, 4, 6)),
    initial=st.sampled_from((None, 1, 2, 3)),
    batch=st.integers(1, 5),
    shuffle=st.booleans(),
    sampling=st.sampled_from(("balanced", "fixed")),
    seed=st.integers(0, 1000),
    block=st.integers(2, 50),
    epoch=st.integers(0, 2),
    resume=st.floats(0, 1.05),
    data=st.data(),
)
def test_any_batches_of_any_worker_equal_the_eager_epoch_array(
    sizes: list[list[int]],
    weights: list[StreamWeights],
    method: str,
    algo: str,
    world: tuple[int, int, int],
    ncn: int,
    initial: int | None,
    batch: int,
    shuffle: bool,
    sampling: str,
    seed: int,
    block: int,
    epoch: int,
    resume: float,
    data: st.DataObject,
) -> None:
    nodes, ranks, workers = world
    try:
        spec = EpochSpec.build(
            sizes,
            weights=weights[: len(sizes)],
            batch_size=batch,
            num_nodes=nodes,
            num_canonical_nodes=ncn,
            shuffle=shuffle,
            shuffle_algo=algo,
            shuffle_seed=seed,
            shuffle_block_size=block,
            batching_method=method,
            sampling_method=sampling,
            initial_physical_nodes=initial,
        )
    except ConfigError:
        assume(False)
        return
    sample_in_epoch = int(resume * spec.epoch_size)
    layout = World(nodes, ranks, workers, 0)
    try:
        eager = generate_work(method, spec, layout, epoch, sample_in_epoch)
    except (ConfigError, ValueError, ZeroDivisionError) as exc:
        with pytest.raises(type(exc)):
            LazyWorkerPlan(spec, layout, epoch, sample_in_epoch)
        return
    store = MemoryStore()
    node, rank, worker = (data.draw(st.integers(0, n - 1)) for n in world)
    plan = LazyWorkerPlan(
        spec,
        World.from_rank(nodes, ranks, workers, node * ranks + rank, worker),
        epoch,
        sample_in_epoch,
        store=store,
    )
    mine = eager[node, rank, worker]
    assert plan.num_batches == len(mine)
    # Random ranges, in any order (a worker resumes anywhere; chunks are independent lookups).
    for _ in range(3):
        first = data.draw(st.integers(0, len(mine)))
        stop = data.draw(st.integers(first, len(mine) + 2))
        assert np.array_equal(plan.batches(first, stop), mine[first:stop])


def _big_spec(samples: int, method: str) -> EpochSpec:
    shards = samples // 2 // 10_000
    return EpochSpec.build(
        [[10_000] * shards, [10_000] * shards],
        weights=[StreamWeights(), StreamWeights(repeat=2)],
        batch_size=32,
        num_nodes=2,
        num_canonical_nodes=4,
        shuffle=True,
        shuffle_algo="py1e",
        shuffle_seed=3,
        shuffle_block_size=100_000,
        batching_method=method,
    )


def _peak_bytes(samples: int, method: str, *, eager: bool = False) -> int:
    """Peak bytes numpy and Python allocate while one worker resumes at a third of the epoch and reads its
    first batches (or, with ``eager``, while the whole epoch array is built)."""
    spec = _big_spec(samples, method)
    world = World.from_rank(2, 2, 2, 3, 1)
    resume = spec.epoch_size // 3 // 128 * 128
    tracemalloc.start()
    try:
        if eager:
            generate_work(method, spec, world, 0, resume)
        else:
            plan = LazyWorkerPlan(spec, world, 0, resume, store=MemoryStore())
            assert plan.batches(0, 4).min() >= 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method", METHODS)
def test_a_worker_resumes_in_memory_that_does_not_grow_with_the_epoch(method: str) -> None:
    small, large = _peak_bytes(1_000_000, method), _peak_bytes(4_000_000, method)
    # 4x the samples (epochs of 1.5M and 6M: two streams, the second repeated twice): the lazy peak stays
    # a few MB (the shuffles' per-span draws, one cell of py1e positions, the batch labels), where one
    # int64 copy of the 6M-sample epoch alone is 48 MB.
    assert large < 8 << 20
    assert large < 1.5 * small + (1 << 20)
    # The measurement sees an epoch-sized array when there is one: the eager reference holds several.
    assert _peak_bytes(1_000_000, method, eager=True) > 8 * _big_spec(1_000_000, method).epoch_size
