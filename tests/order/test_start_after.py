"""A worker's plan started after the samples it already yielded (a restored torchdata worker) is the tail
of its whole plan, and computes none of the plan's artefacts before that point."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError
from astreaming.order import EpochSpec, World, plan_worker_epoch
from astreaming.order import perm as perm_module
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.store import Arrays, MemoryStore
from astreaming.order.weights import StreamWeights

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # specs whose streams choose 0 samples
]
ALGOS = ("naive", "py1s", "py2s", "py1br", "py1e")
METHODS = ("random", "stratified", "per_stream", "device_per_stream")

weights_st = st.one_of(
    st.just(StreamWeights()),
    st.builds(lambda r: StreamWeights(repeat=r), st.sampled_from((0.5, 1.5, 2.0))),
    st.builds(lambda c: StreamWeights(choose=c), st.integers(3, 40)),
)


class ComputingStore(MemoryStore):
    """A :class:`MemoryStore` that lists the keys it computed, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.computed: list[str] = []

    def get(self, key: str, compute: object) -> Arrays:
        """The artefact ``key``; its computation is recorded."""

        def counted() -> Arrays:
            self.computed.append(key)
            return compute()  # type: ignore[operator,no-any-return]

        return super().get(key, counted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.lists(st.integers(1, 20), min_size=1, max_size=4), min_size=1, max_size=3),
    weights=st.lists(weights_st, min_size=3, max_size=3),
    method=st.sampled_from(METHODS),
    algo=st.sampled_from(ALGOS),
    # (nodes, ranks per node, workers per rank, nodes of the run resumed = canonical nodes): the
    # ``relaxed`` partition re-cuts the batches where neither node count divides the other.
    world=st.sampled_from(
        [
            *((1, 1, 1, 1), (1, 2, 2, 1), (2, 1, 2, 2), (2, 2, 1, 4), (1, 1, 3, 1)),
            *((3, 1, 2, 2), (2, 2, 1, 3), (3, 2, 1, 2), (2, 1, 3, 3)),  # relaxed
        ]
    ),
    batch=st.integers(1, 6),
    shuffle=st.booleans(),
    seed=st.integers(0, 1000),
    block=st.integers(4, 40),
    epoch=st.integers(0, 2),
    resume=st.floats(0, 1),
    after=st.floats(0, 1.2),
    chunk=st.integers(1, 9),
    windows=st.sampled_from(((perm_module.GRID, perm_module.CELL), (8, 4))),
)
def test_a_plan_started_after_n_samples_is_the_whole_plan_without_its_first_n(
    sizes: list[list[int]],
    weights: list[StreamWeights],
    method: str,
    algo: str,
    world: tuple[int, int, int, int],
    batch: int,
    shuffle: bool,
    seed: int,
    block: int,
    epoch: int,
    resume: float,
    after: float,
    chunk: int,
    windows: tuple[int, int],
) -> None:
    nodes, ranks, workers, initial = world
    try:
        spec = EpochSpec.build(
            sizes,
            weights=weights[: len(sizes)],
            batch_size=batch,
            num_nodes=nodes,
            num_canonical_nodes=initial,
            shuffle=shuffle,
            shuffle_algo=algo,
            shuffle_seed=seed,
            shuffle_block_size=block,
            batching_method=method,
        ).with_resume(
            num_canonical_nodes=initial,
            shuffle_seed=seed,
            initial_physical_nodes=initial,
            shuffle_block_size=block,
        )
    except ConfigError:
        assume(False)
        return
    sample_in_epoch = min(int(resume * (spec.epoch_size + 1)), spec.epoch_size)
    with mock.patch.multiple(perm_module, GRID=windows[0], CELL=windows[1]):
        for index in range(nodes * ranks * workers):
            node, rest = divmod(index, ranks * workers)
            w = World.from_rank(nodes, ranks, workers, node * ranks + rest // workers, rest % workers)
            try:
                eager = plan_worker_epoch(spec, w, epoch, sample_in_epoch).sample_ids
            except (ConfigError, ValueError):
                assume(False)
                return
            # Anywhere in the worker's part: its first and last sample, its end, past its end.
            yielded = int(after * (len(eager) + 1))
            plan = LazyWorkerPlan(spec, w, epoch, sample_in_epoch, store=MemoryStore(), chunk=chunk)
            plan.start_after(yielded)
            chunks = list(plan)
            got = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
            assert np.array_equal(got, eager[yielded:]), (index, yielded, len(eager))
            assert all(len(c) for c in chunks)


@pytest.mark.parametrize("algo", ["py1e", "py1br"])
@pytest.mark.parametrize("workers", [1, 3])
def test_a_late_start_computes_only_the_shuffle_pieces_from_there_on(
    algo: str, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny py1e windows (and small py1br blocks): the epoch spans dozens of them.
    monkeypatch.setattr(perm_module, "GRID", 64)
    monkeypatch.setattr(perm_module, "CELL", 16)
    spec = EpochSpec.build(
        [[100] * 30], batch_size=4, num_nodes=1, shuffle=True, shuffle_algo=algo, shuffle_block_size=64
    )
    for worker in range(workers):
        world = World(1, 1, workers, worker)
        whole = ComputingStore()
        eager = LazyWorkerPlan(spec, world, 0, store=whole).sample_ids()
        yielded = len(eager) * 9 // 10
        store = ComputingStore()
        plan = LazyWorkerPlan(spec, world, 0, store=store)
        plan.start_after(yielded)
        first = next(iter(plan))
        assert np.array_equal(first, eager[yielded : yielded + len(first)])
        # The windows or cells (py1e) or blocks (py1br) of the shuffle: the whole walk computes dozens,
        # the late start only those of its first chunk (a batch: one, or two where it straddles two).
        assert plan.perm is not None
        pieces = [k for k in whole.computed if k != plan.perm.key]
        late = [k for k in store.computed if k != plan.perm.key]
        assert len(pieces) >= 20
        assert 1 <= len(late) <= 2, late


def test_a_negative_start_is_refused() -> None:
    spec = EpochSpec.build([[10]], batch_size=2, num_nodes=1)
    plan = LazyWorkerPlan(spec, World(1, 1, 1, 0), 0)
    with pytest.raises(ConfigError, match="must be >= 0, got -1"):
        plan.start_after(-1)
