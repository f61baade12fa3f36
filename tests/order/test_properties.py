"""Property tests of the order functions (hypothesis)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError
from astreaming.order import (
    EpochSpec,
    World,
    generate_work,
    get_shuffle,
    interleave_worker_batches,
    iter_shuffle,
    plan_worker_epoch,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALGOS = ("naive", "py1s", "py2s", "py1br", "py1e")

units_st = st.lists(st.integers(0, 25), min_size=1, max_size=12)


@FAST
@given(
    algo=st.sampled_from(ALGOS),
    units=units_st,
    ncn=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    epoch=st.integers(0, 5),
    block=st.integers(2, 60),
)
def test_every_shuffle_is_a_deterministic_permutation(
    algo: str, units: list[int], ncn: int, seed: int, epoch: int, block: int
) -> None:
    assume(algo != "py1e" or sum(units) >= ncn)
    perm = get_shuffle(algo, units, ncn, seed, epoch, block)
    assert perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(sum(units)))
    assert np.array_equal(perm, get_shuffle(algo, units, ncn, seed, epoch, block))


@FAST
@given(
    algo=st.sampled_from(("py1s", "py2s")), units=units_st, seed=st.integers(0, 1000), epoch=st.integers(0, 3)
)
def test_shard_local_shuffles_keep_each_unit_contiguous_on_one_node(
    algo: str, units: list[int], seed: int, epoch: int
) -> None:
    perm = get_shuffle(algo, units, 1, seed, epoch, 8)
    where = np.empty_like(perm)
    where[perm] = np.arange(len(perm))
    start = 0
    for size in units:
        spots = np.sort(where[start : start + size])
        # A unit's samples occupy one contiguous run of positions (shuffled only inside it).
        assert size == 0 or spots[-1] - spots[0] == size - 1
        start += size


@dataclass(frozen=True)
class Layout:
    nodes: int
    ranks: int
    workers: int
    batch: int


def _layouts(global_batch: int, ncn: int) -> list[Layout]:
    out = []
    for p in (1, 2, 3, 4, 6, 8):
        if ncn % p and p % ncn:
            continue
        for r in (1, 2, 3, 4):
            if global_batch % (p * r):
                continue
            for w in (1, 2, 3):
                out.append(Layout(p, r, w, global_batch // (p * r)))
    return out


def _spec(
    sizes: list[int], layout: Layout, ncn: int, algo: str, seed: int, shuffle: bool = True
) -> EpochSpec:
    return EpochSpec.build(
        [sizes],
        batch_size=layout.batch,
        num_nodes=layout.nodes,
        num_canonical_nodes=ncn,
        shuffle=shuffle,
        shuffle_algo=algo,
        shuffle_seed=seed,
        shuffle_block_size=10,
    )


def _rank_batches(
    spec: EpochSpec, layout: Layout, rank: int, epoch: int, sample_in_epoch: int
) -> list[list[int]]:
    per_worker = []
    for w in range(layout.workers):
        world = World.from_rank(layout.nodes, layout.ranks, layout.workers, rank, w)
        per_worker.append(plan_worker_epoch(spec, world, epoch, sample_in_epoch).batches())
    return [b.tolist() for b in interleave_worker_batches(per_worker)]


@FAST
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    ncn=st.sampled_from((1, 2, 4)),
    global_batch=st.sampled_from((4, 6, 8, 12)),
    algo=st.sampled_from(ALGOS),
    seed=st.integers(0, 500),
    data=st.data(),
)
def test_elastic_determinism_same_sample_set_per_global_step(
    sizes: list[int], ncn: int, global_batch: int, algo: str, seed: int, data: st.DataObject
) -> None:
    n = sum(sizes)
    assume(n >= ncn)
    layouts = _layouts(global_batch, ncn)
    chosen = data.draw(st.lists(st.sampled_from(layouts), min_size=2, max_size=3, unique=True))
    # Steps made only of real samples (no canonical-row or rank padding) are layout independent.
    full_steps = ncn * -(-n // ncn) // global_batch
    reference = None
    for layout in chosen:
        spec = _spec(sizes, layout, ncn, algo, seed)
        try:
            ranks = [_rank_batches(spec, layout, r, 1, 0) for r in range(layout.nodes * layout.ranks)]
        except ConfigError:
            assume(False)  # too few samples to pad canonical rows for this many nodes (mosaic fails too)
            raise
        steps = [sorted(x for rank in ranks for x in rank[k]) for k in range(full_steps)]
        if reference is None:
            reference = steps
        assert steps == reference


@FAST
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    ncn=st.sampled_from((1, 2, 3, 4)),
    layout=st.builds(
        Layout, st.sampled_from((1, 2, 4)), st.integers(1, 3), st.integers(1, 3), st.integers(1, 5)
    ),
    algo=st.sampled_from(ALGOS),
    seed=st.integers(0, 500),
    data=st.data(),
)
def test_resuming_after_k_global_batches_yields_the_tail(
    sizes: list[int], ncn: int, layout: Layout, algo: str, seed: int, data: st.DataObject
) -> None:
    n = sum(sizes)
    assume(n >= ncn and not (ncn % layout.nodes and layout.nodes % ncn))
    spec = _spec(sizes, layout, ncn, algo, seed)
    global_batch = layout.nodes * layout.ranks * layout.batch
    # Steps of real samples only: the rank padding of the last step is recomputed from what is left (mosaic
    # tiles a short remainder cyclically), so the padded tail may legitimately differ.
    real_steps = ncn * -(-n // ncn) // global_batch
    try:
        full = [_rank_batches(spec, layout, r, 2, 0) for r in range(layout.nodes * layout.ranks)]
    except ConfigError:
        assume(False)  # too few samples to pad canonical rows for this many nodes (mosaic fails too)
        raise
    k = data.draw(st.integers(0, min(real_steps, n // global_batch)))
    resumed = [
        _rank_batches(spec, layout, r, 2, k * global_batch) for r in range(layout.nodes * layout.ranks)
    ]
    assert [rank[: real_steps - k] for rank in resumed] == [rank[k:real_steps] for rank in full]
    if k == 0:
        assert resumed == full


@FAST
@given(
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    ncn=st.sampled_from((1, 2, 3, 4, 6)),
    layout=st.builds(
        Layout, st.sampled_from((1, 2, 3, 4)), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4)
    ),
    initial=st.sampled_from((None, 1, 2, 3)),
    algo=st.sampled_from(ALGOS),
    shuffle=st.booleans(),
    drop=st.integers(0, 40),
    seed=st.integers(0, 500),
)
def test_worker_plans_are_slices_of_generate_work(
    sizes: list[int],
    ncn: int,
    layout: Layout,
    initial: int | None,
    algo: str,
    shuffle: bool,
    drop: int,
    seed: int,
) -> None:
    n = sum(sizes)
    assume(n >= ncn)
    spec = EpochSpec.build(
        [sizes],
        batch_size=layout.batch,
        num_nodes=layout.nodes,
        num_canonical_nodes=ncn,
        shuffle=shuffle,
        shuffle_algo=algo,
        shuffle_seed=seed,
        shuffle_block_size=7,
        initial_physical_nodes=initial,
    )
    world = World(layout.nodes, layout.ranks, layout.workers, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            full = generate_work("random", spec, world, 3, drop)
        except ValueError as err:
            # The per-worker path refuses exactly the same inputs.
            with pytest.raises(type(err)):
                plan_worker_epoch(spec, world, 3, drop)
            return
    for node in range(layout.nodes):
        for rank in range(layout.ranks):
            for w in range(layout.workers):
                wworld = World.from_rank(
                    layout.nodes, layout.ranks, layout.workers, node * layout.ranks + rank, w
                )
                plan = plan_worker_epoch(spec, wworld, 3, drop)
                assert np.array_equal(plan.work, full[node, rank, w])
                assert np.array_equal(plan.sample_ids, full[node, rank, w][full[node, rank, w] != -1])


@FAST
@given(
    units=st.lists(st.integers(0, 40), min_size=1, max_size=10),
    ncn=st.integers(1, 6),
    seed=st.integers(0, 999),
    epoch=st.integers(0, 4),
    block=st.integers(1, 50),
    skip=st.sets(st.integers(0, 5)),
)
def test_py1e_skipping_nodes_leaves_the_other_nodes_identical(
    units: list[int], ncn: int, seed: int, epoch: int, block: int, skip: set[int]
) -> None:
    assume(sum(units) >= ncn)
    full = get_shuffle("py1e", units, ncn, seed, epoch, block)
    with warnings.catch_warnings(record=True) as caught_skip:
        warnings.simplefilter("always")
        pieces = list(iter_shuffle("py1e", units, ncn, seed, epoch, block, skip=skip))
    with warnings.catch_warnings(record=True) as caught_full:
        warnings.simplefilter("always")
        list(iter_shuffle("py1e", units, ncn, seed, epoch, block))
    assert len(caught_skip) == len(caught_full)  # skipped nodes still report small blocks
    assert len(pieces) == ncn
    for k, (start, piece) in enumerate(pieces):
        if k in skip:
            assert piece is None
        else:
            assert piece is not None
            assert np.array_equal(piece, full[start : start + len(piece)])
