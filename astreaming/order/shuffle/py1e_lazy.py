"""``py1e`` computed lazily: all draws in one cheap pass, then the sorted order window by window.

mosaic sorts each canonical node whole (an argsort of up to the whole epoch). A sample at node offset
``i`` of a span moves to position ``i + u`` with ``|u| <= reach`` (half the largest drawn block), so the
``r``-th smallest position lies within ``[r - reach, r + reach]``. The samples of sorted slots ``[a, b)``
are therefore among node offsets ``[a - 2 reach, b + 2 reach)``, and every offset below that window sorts
before all of them: slot ranks inside the window are the window's own ranks shifted by its start. So a
window costs O(its size), and the whole node never has to exist.

The pass (:func:`py1e_draws`) replays the epoch generator once: it shuffles a scratch buffer per span
(the number of draws a shuffle takes depends on the values drawn, so it cannot be skipped) and records
the generator state before each span's shuffle and before each span's uniform offsets; the uniforms take
exactly one 64-bit draw each, so they are skipped with ``advance``. The pass is O(samples) in time and
O(spans) in memory; its result is small and is shared between processes by the caller.

Exact float ties between positions (about one per 10^8 samples at the scale of 10^8) sort in an order
that depends on numpy's sort implementation, in mosaic's full sort as in a window's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from astreaming.order.shuffle._spans import NodeSpans
from astreaming.order.shuffle.py1e import BLOCK_WARNING

__all__ = ["Py1eDraws", "group_indices", "py1e_draws", "py1e_slots", "warn_block"]

_MASK = (1 << 64) - 1

#: Arrays of :func:`py1e_draws`' result (one row per span unless said otherwise).
Py1eDraws = dict[str, np.ndarray]


def _pack(bitgen: np.random.BitGenerator) -> list[int]:
    state = bitgen.state
    s, inc = state["state"]["state"], state["state"]["inc"]
    return [s >> 64, s & _MASK, inc >> 64, inc & _MASK, state["has_uint32"], state["uinteger"]]


def _generator(row: np.ndarray) -> np.random.Generator:
    values = row.tolist()
    bitgen = np.random.PCG64()
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": (values[0] << 64) | values[1], "inc": (values[2] << 64) | values[3]},
        "has_uint32": values[4],
        "uinteger": values[5],
    }
    return np.random.Generator(bitgen)


def _skip(bitgen: np.random.PCG64, draws: int) -> None:
    """Skip ``draws`` 64-bit draws, keeping the buffered 32-bit half (``advance`` resets it)."""
    state = bitgen.state
    bitgen.advance(draws)
    moved: dict[str, Any] = dict(bitgen.state)
    moved["has_uint32"], moved["uinteger"] = state["has_uint32"], state["uinteger"]
    bitgen.state = moved  # type: ignore[assignment]  # numpy's stub: a TypedDict of the same keys


def py1e_draws(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
) -> Py1eDraws:
    """Replay the epoch's py1e draws and keep what any window needs.

    Returns:
        ``span_lo``/``span_hi`` (big ids of each span), ``span_offset`` (offset within its node),
        ``shuffle_state``/``uniform_state`` ((spans, 6) uint64 generator states), ``left``/``right`` (the
        uniform bounds), ``node_spans`` (C + 1 span index bounds per node), ``node_bounds`` (C + 1 epoch
        positions), ``node_reach`` (C: the largest offset a sample of the node can move), ``warned`` (1
        when a span is larger than its block: the caller emits mosaic's warning, see :func:`warn_block`).

    Raises:
        ConfigError: if a canonical node would get no samples.
    """
    layout = NodeSpans(shuffle_units, num_canonical_nodes, seed, epoch)
    layout.require_samples_per_node()
    rng = layout.epoch_rng
    bitgen = rng.bit_generator
    assert isinstance(bitgen, np.random.PCG64)  # default_rng's
    low, high = int(0.75 * block_size), int(1.25 * block_size)
    spans = layout.spans
    count = len(spans)
    lo = np.fromiter((s[0] for s in spans), np.int64, count)
    hi = np.fromiter((s[1] for s in spans), np.int64, count)
    lengths = (hi - lo).tolist()
    offset = np.zeros(count, np.int64)
    shuffle_state = np.zeros((count, 6), np.uint64)
    uniform_state = np.zeros((count, 6), np.uint64)
    left = np.zeros(count, np.float64)
    right = np.zeros(count, np.float64)
    reach = np.zeros(num_canonical_nodes, np.float64)
    scratch = np.empty(max(lengths, default=0), np.int64)
    warned = False
    for k, (begin, end) in enumerate(layout.parts):
        size = int(layout.bounds[k + 1] - layout.bounds[k])
        at = 0
        for s in range(begin, end):
            offset[s] = at
            shuffle_state[s] = _pack(bitgen)
            rng.shuffle(scratch[: lengths[s]])  # the draws of shuffling the span's samples
            at += lengths[s]
        for s in range(begin, end):
            span = lengths[s]
            cutoff = (int(rng.integers(low, high)) - span) / 2
            if cutoff < 0:
                cutoff, warned = 0, True
            left[s] = max(-cutoff, -int(offset[s]))
            right[s] = min(cutoff, size - int(offset[s]) - span)
            uniform_state[s] = _pack(bitgen)
            _skip(bitgen, span)
        if end > begin:
            reach[k] = max(float(np.max(-left[begin:end])), float(np.max(right[begin:end])))
    return {
        "span_lo": lo,
        "span_hi": hi,
        "span_offset": offset,
        "shuffle_state": shuffle_state,
        "uniform_state": uniform_state,
        "left": left,
        "right": right,
        "node_spans": np.array([p[0] for p in layout.parts] + [count], np.int64),
        "node_bounds": np.asarray(layout.bounds, np.int64),
        "node_reach": reach,
        "warned": np.array([int(warned)], np.int64),
    }


def warn_block(draws: Py1eDraws) -> None:
    """mosaic's warning when a span is larger than its shuffle block (once per plan, as mosaic does)."""
    if int(draws["warned"][0]):
        warnings.warn(BLOCK_WARNING, UserWarning, stacklevel=3)


def py1e_slots(draws: Py1eDraws, node: int, first: int, stop: int) -> np.ndarray:
    """``perm`` of canonical node ``node`` at node slots ``[first, stop)``: the big ids, in sorted order."""
    bounds = draws["node_bounds"]
    size = int(bounds[node + 1] - bounds[node])
    first, stop = max(0, first), min(size, stop)
    if stop <= first:
        return np.zeros(0, np.int64)
    s_begin, s_end = (int(v) for v in draws["node_spans"][node : node + 2])
    offsets = draws["span_offset"][s_begin:s_end]
    margin = 2 * math.ceil(float(draws["node_reach"][node])) + 2
    lo, hi = max(0, first - margin), min(size, stop + margin)
    # Spans overlapping the window [lo, hi) of node offsets.
    a = s_begin + int(np.searchsorted(offsets, lo, side="right")) - 1
    b = s_begin + int(np.searchsorted(offsets, hi, side="left"))
    positions = np.empty(hi - lo, np.float64)
    span_offset, span_lo, span_hi = draws["span_offset"], draws["span_lo"], draws["span_hi"]
    for s in range(a, b):
        start, length = int(span_offset[s]), int(span_hi[s] - span_lo[s])
        if not length:
            continue
        bounds_s = float(draws["left"][s]), float(draws["right"][s])
        u = _generator(draws["uniform_state"][s]).uniform(*bounds_s, length)
        x0, x1 = max(start, lo), min(start + length, hi)
        positions[x0 - lo : x1 - lo] = u[x0 - start : x1 - start]
    # mosaic adds the offsets to float64 node offsets: the same (commutative) addition, the same values.
    positions += np.arange(lo, hi, dtype=np.float64)
    chosen = _ranks(positions, first - lo, stop - lo)
    del positions
    # The sample at each chosen node offset: the shuffles of the spans they fall in, replayed in place.
    where = lo + chosen
    w0, w1 = int(where.min()), int(where.max()) + 1
    values = np.empty(w1 - w0, np.int64)
    a = s_begin + int(np.searchsorted(offsets, w0, side="right")) - 1
    b = s_begin + int(np.searchsorted(offsets, w1, side="left"))
    for s in range(a, b):
        start, span_first, span_stop = int(span_offset[s]), int(span_lo[s]), int(span_hi[s])
        shuffled = np.arange(span_first, span_stop, dtype=np.int64)
        _generator(draws["shuffle_state"][s]).shuffle(shuffled)
        x0, x1 = max(start, w0), min(start + len(shuffled), w1)
        values[x0 - w0 : x1 - w0] = shuffled[x0 - start : x1 - start]
    picked: np.ndarray = values[where - w0]
    return picked


def _ranks(positions: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Indices of the ``k0``-th to ``k1 - 1``-th smallest ``positions``, in increasing order."""
    if k0 == 0 and k1 == len(positions):
        return np.argsort(positions)
    # A linear selection of the two boundary values, then a sort of the chunk only.
    low, high = np.partition(positions, [k0, k1 - 1])[[k0, k1 - 1]]
    members = np.flatnonzero((positions >= low) & (positions <= high))
    if len(members) != k1 - k0:  # equal positions at a boundary: select by index instead
        members = np.argpartition(positions, [k0, k1 - 1])[k0:k1]
    return members[np.argsort(positions[members])]


def group_indices(keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(key, indices of keys equal to it)`` for each distinct key, in increasing key order."""
    order = np.argsort(keys, kind="stable")
    distinct, starts = np.unique(keys[order], return_index=True)
    ends = [*starts[1:].tolist(), len(order)]
    for key, begin, end in zip(distinct.tolist(), starts.tolist(), ends, strict=True):
        yield key, order[begin:end]
