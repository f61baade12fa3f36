"""The lazy shuffles (draws replayed once, pieces redone on demand) give mosaic's permutations exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from astreaming.order import get_shuffle
from astreaming.order.perm import PermSource
from astreaming.order.resample import resample_streams
from astreaming.order.shuffle.pieces import (
    piece_values,
    py1br_cluster,
    py1br_draws,
    py1br_values,
    py1s_draws,
    py2s_draws,
)
from astreaming.order.shuffle.py1e_lazy import py1e_draws, py1e_offsets, py1e_slots, py1e_values
from astreaming.order.spec import EpochSpec

from ._stores import CountingStore

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # py1e's small-block warning
GOLDEN = Path(__file__).parent.parent / "golden" / "order" / "shuffle.json"
LAZY = ("py1s", "py2s", "py1br", "py1e")


def lazy_at(algo: str, units: list[int], ncn: int, seed: int, epoch: int, block: int, positions: Any) -> Any:
    """``perm[positions]`` through the lazy algorithm (py1e: node by node, offsets then values)."""
    positions = np.asarray(positions, np.int64)
    if algo == "py1s":
        return piece_values(py1s_draws(units, ncn, seed, epoch), positions)
    if algo == "py2s":
        return piece_values(py2s_draws(units, ncn, seed, epoch), positions)
    if algo == "py1br":
        draws = py1br_draws(units, ncn, seed, epoch, block)
        return py1br_values(draws, positions, lambda index: py1br_cluster(draws, index))
    draws = py1e_draws(units, ncn, seed, epoch, block)
    bounds = draws["node_bounds"]
    node = np.searchsorted(bounds, positions, side="right") - 1
    out = np.empty(len(positions), np.int64)
    for k in np.unique(node).tolist():
        pick = np.flatnonzero(node == k)
        size = int(bounds[k + 1] - bounds[k])
        offsets = py1e_offsets(draws, k, 0, size)
        out[pick] = py1e_values(draws, k, offsets[positions[pick] - bounds[k]])
    return out


def _golden_cases() -> list[Any]:
    cases = json.loads(GOLDEN.read_text())["cases"]
    chosen = [c for c in cases if c["args"]["algo"] in LAZY and "perm" in c["expected"]]
    return [pytest.param(c, id=f"{c['args']['algo']}-{i}") for i, c in enumerate(chosen)]


@pytest.mark.parametrize("case", _golden_cases())
def test_lazy_shuffles_reproduce_every_golden_permutation(case: dict[str, Any]) -> None:
    args = case["args"]
    expected = np.asarray(case["expected"]["perm"], np.int64)
    units, algo = args["shard_sizes"], args["algo"]
    call = (algo, units, args["num_canonical_nodes"], args["seed"], args["epoch"], args["block_size"])
    assert np.array_equal(lazy_at(*call, np.arange(len(expected))), expected)
    # Any subset, in any order: what one worker asks for.
    picks = np.random.default_rng(len(expected)).permutation(len(expected))[: max(1, len(expected) // 3)]
    assert np.array_equal(lazy_at(*call, picks), expected[picks])


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    algo=st.sampled_from(LAZY),
    units=st.lists(st.integers(0, 50), min_size=1, max_size=12),
    ncn=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    epoch=st.integers(0, 5),
    block=st.integers(2, 120),
    data=st.data(),
)
def test_lazy_shuffles_equal_the_eager_ones(
    algo: str, units: list[int], ncn: int, seed: int, epoch: int, block: int, data: st.DataObject
) -> None:
    assume(sum(units) >= ncn)
    full = get_shuffle(algo, units, ncn, seed, epoch, block)
    positions = data.draw(st.lists(st.integers(0, len(full) - 1), min_size=1, max_size=40))
    assert np.array_equal(lazy_at(algo, units, ncn, seed, epoch, block, positions), full[positions])


@SETTINGS
@given(
    units=st.lists(st.integers(0, 400), min_size=1, max_size=30),
    ncn=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    block=st.integers(1, 2000),
    data=st.data(),
)
def test_py1e_slot_ranges_anywhere_in_large_nodes(
    units: list[int], ncn: int, seed: int, block: int, data: st.DataObject
) -> None:
    # Nodes far larger than the reach: thresholds near both ends of a node move more than once.
    assume(sum(units) >= ncn)
    full = get_shuffle("py1e", units, ncn, seed, 1, block)
    draws = py1e_draws(units, ncn, seed, 1, block)
    bounds = draws["node_bounds"]
    node = data.draw(st.integers(0, ncn - 1))
    size = int(bounds[node + 1] - bounds[node])
    first = data.draw(st.integers(0, size - 1))
    stop = data.draw(st.integers(first + 1, min(size, first + 64)))
    expected = full[bounds[node] + first : bounds[node] + stop]
    assert np.array_equal(py1e_slots(draws, node, first, stop), expected)


@pytest.mark.parametrize("algo", ("py1br", "py1e"))
def test_shared_windows_and_blocks_are_read_in_order_and_released(
    algo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astreaming.order import perm as perm_module

    monkeypatch.setattr(perm_module, "GRID", 32)
    monkeypatch.setattr(perm_module, "CELL", 8)
    sizes = [[37, 50, 21, 45, 0, 13]]
    spec = EpochSpec.build(
        sizes,
        batch_size=4,
        num_nodes=1,
        num_canonical_nodes=2,
        shuffle=True,
        shuffle_algo=algo,
        shuffle_block_size=20,
    )
    res = resample_streams(sizes, spec.choose_per_stream, seed=spec.shuffle_seed, epoch=2, shuffle=True)
    full = get_shuffle(algo, res.shuffle_units, 2, spec.shuffle_seed, 2, 20)

    store = CountingStore()
    source = PermSource(spec, res, 2, store)
    # A consumer's requests: small ones first (cells), then growing ones (windows or blocks).
    begin, step = 0, 3
    while begin < len(full):
        positions = np.arange(begin, min(len(full), begin + step))
        assert np.array_equal(source.take(positions), full[positions])
        begin, step = begin + step, step * 2
    assert store.discarded  # artefacts behind the consumer were dropped
    source.release()
    assert not store._items  # the epoch's artefacts are all gone
