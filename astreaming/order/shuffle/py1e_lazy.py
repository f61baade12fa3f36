"""``py1e`` computed lazily: all draws in one cheap pass, then any range of the sorted order on its own.

mosaic sorts each canonical node whole (an argsort of up to the whole epoch). A sample at node offset
``i`` of a span moves to position ``i + u`` with ``|u| < reach`` (half the largest drawn block), so the
number of positions below a value ``x`` is ``lo + #{computed positions < x}`` as soon as the positions
of the offsets ``[lo, hi)`` within ``reach`` of ``x`` are computed: every offset further left lies
below ``x``, every offset further right above it. Sorted slots ``[a, b)`` are found by counting below
two thresholds a little outside ``a`` and ``b`` (moved until they bracket the slots) and sorting only
the positions between them (:func:`py1e_offsets`): O(reach + (b - a)) uniform draws, whatever the node's
size. Their big ids come from replaying the shuffles of just the spans they fall in
(:func:`py1e_values`).

The pass (:func:`py1e_draws`) replays the epoch generator once: it shuffles a scratch buffer per span
(the number of draws a shuffle takes depends on the values drawn, so it cannot be skipped) and records
the generator state before each span's shuffle; then, per node, the state after its shuffles and where
in the generator's output each span's uniform offsets start. The uniforms take exactly one 64-bit draw
each, so they are skipped, and each span's block-size integer is read straight from the output stream
(:class:`~astreaming.order.shuffle._cursor.DrawCursor`). The pass is O(samples) in time and
O(spans) in memory; its result is small and is shared between processes by the caller.

Exact float ties between positions (about one per 10^8 samples at the scale of 10^8) sort in an order
that depends on numpy's sort implementation, in mosaic's full sort as in a range's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from astreaming.order.quiet import warn
from astreaming.order.shuffle._cursor import DrawCursor
from astreaming.order.shuffle._replay import STATE_WIDTH, Replay, pack_state
from astreaming.order.shuffle._spans import NodeSpans
from astreaming.order.shuffle.py1e import BLOCK_WARNING

__all__ = [
    "Py1eDraws",
    "group_indices",
    "py1e_draws",
    "py1e_offsets",
    "py1e_slots",
    "py1e_values",
    "warn_block",
]

#: Arrays of :func:`py1e_draws`' result (one row per span unless said otherwise).
Py1eDraws = dict[str, np.ndarray]


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
        ``shuffle_state`` ((spans, 6) uint64 generator states before each span's shuffle),
        ``uniform_base`` ((C, 6): each node's state after its shuffles) and ``uniform_at`` (the 64-bit
        draws from there to each span's first uniform), ``left``/``right`` (the uniform bounds),
        ``node_spans`` (C + 1 span index bounds per node), ``node_bounds`` (C + 1 epoch positions),
        ``node_reach`` (C: the largest offset a sample of the node can move), ``warned`` (1
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
    shuffle_state = np.zeros((count, STATE_WIDTH), np.uint64)
    uniform_base = np.zeros((num_canonical_nodes, STATE_WIDTH), np.uint64)
    uniform_at = np.zeros(count, np.int64)
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
            shuffle_state[s] = pack_state(bitgen)
            rng.shuffle(scratch[: lengths[s]])  # the draws of shuffling the span's samples
            at += lengths[s]
        uniform_base[k] = pack_state(bitgen)
        cursor = DrawCursor(bitgen)
        for s in range(begin, end):
            span = lengths[s]
            cutoff = (cursor.integers(low, high) - span) / 2
            if cutoff < 0:
                cutoff, warned = 0, True
            left[s] = max(-cutoff, -int(offset[s]))
            right[s] = min(cutoff, size - int(offset[s]) - span)
            uniform_at[s] = cursor.position
            cursor.skip(span)  # the span's uniforms: one 64-bit draw each
        cursor.settle()
        if end > begin:
            reach[k] = max(float(np.max(-left[begin:end])), float(np.max(right[begin:end])))
    return {
        "span_lo": lo,
        "span_hi": hi,
        "span_offset": offset,
        "shuffle_state": shuffle_state,
        "uniform_base": uniform_base,
        "uniform_at": uniform_at,
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
        warn(BLOCK_WARNING, UserWarning, stacklevel=3)


def py1e_slots(draws: Py1eDraws, node: int, first: int, stop: int) -> np.ndarray:
    """``perm`` of canonical node ``node`` at node slots ``[first, stop)``: the big ids, in sorted order."""
    return py1e_values(draws, node, py1e_offsets(draws, node, first, stop))


def py1e_offsets(draws: Py1eDraws, node: int, first: int, stop: int) -> np.ndarray:
    """The node offsets (before the sort) of the samples at node slots ``[first, stop)``, in slot order.

    Costs O(reach + (stop - first)) uniform draws and a sort of about ``stop - first`` values, whatever
    the size of the node: positions are computed for the offsets that can reach the slots, two value
    thresholds bracketing the slots are found by counting, and only the positions between them are
    sorted.
    """
    bounds = draws["node_bounds"]
    size = int(bounds[node + 1] - bounds[node])
    first, stop = max(0, int(first)), min(size, int(stop))
    if stop <= first:
        return np.zeros(0, np.int64)
    return _select(_NodePositions(draws, node), first, stop)


class _NodePositions:
    """The positions (node offset + uniform offset) of one canonical node's samples, span by span."""

    def __init__(self, draws: Py1eDraws, node: int) -> None:
        self.draws = draws
        bounds = draws["node_bounds"]
        self.size = int(bounds[node + 1] - bounds[node])
        self.s_begin, self.s_end = (int(v) for v in draws["node_spans"][node : node + 2])
        self.base = draws["uniform_base"][node]  # the generator after the node's shuffles
        # |position - offset| < reach for every sample of the node (float rounding included).
        self.reach = math.ceil(float(draws["node_reach"][node])) + 1
        lengths = draws["span_hi"][self.s_begin : self.s_end] - draws["span_lo"][self.s_begin : self.s_end]
        self.ramp = np.arange(int(lengths.max(initial=0)), dtype=np.float64)

    def scan(self, low: float, high: float) -> tuple[int, int, np.ndarray, np.ndarray]:
        """Count the positions below ``low`` and below ``high``; list those in ``[low, high)``.

        Only offsets within ``reach`` of the thresholds are computed: those further left are all
        below ``low``, those further right all at or above ``high``. A span whose positions all lie on
        one side of both thresholds is counted without drawing. Work is span by span, in cache.

        Returns:
            (positions < low, positions < high, node offsets and positions of those in [low, high)).
        """
        draws, reach = self.draws, self.reach
        lo = max(0, math.floor(low) - reach)
        hi = min(self.size, math.ceil(high) + reach)
        below_low = below_high = lo
        offsets = draws["span_offset"][self.s_begin : self.s_end]
        a = self.s_begin + max(0, int(np.searchsorted(offsets, lo, side="right")) - 1)
        b = self.s_begin + int(np.searchsorted(offsets, hi, side="left"))
        starts = draws["span_offset"][a:b].tolist()
        lengths = (draws["span_hi"][a:b] - draws["span_lo"][a:b]).tolist()
        lefts, rights = draws["left"][a:b].tolist(), draws["right"][a:b].tolist()
        uniform_at = draws["uniform_at"]
        found_offsets: list[np.ndarray] = []
        found_values: list[np.ndarray] = []
        replay = Replay()
        rng, drawn = replay.at(self.base), 0  # drawn: 64-bit draws taken since the node's base state
        scratch = np.empty(len(self.ramp), np.float64)
        index = np.empty(len(self.ramp), np.float64)
        under_low = np.empty(len(self.ramp), np.bool_)
        under_high = np.empty(len(self.ramp), np.bool_)
        for s, start, length, left, right in zip(range(a, b), starts, lengths, lefts, rights, strict=True):
            x0, x1 = max(start, lo), min(start + length, hi)
            n = x1 - x0
            if n <= 0:
                continue
            smallest, largest = x0 + left - 1, x1 + right  # bounds of the span's positions, rounding included
            if largest < low:
                below_low += n
                below_high += n
                continue
            if smallest >= high:
                continue
            # Spans come in draw order: move forward to this one's first uniform (one 64-bit draw each).
            at = int(uniform_at[s]) + x0 - start
            replay.bitgen.advance(at - drawn)
            drawn = at + n
            # uniform(left, right) is left + (right - left) * random(): the same operations in place,
            # then mosaic's addition of the float64 node offset (commutative: the same values).
            values = scratch[:n]
            rng.random(out=values)
            values *= right - left
            values += left
            np.add(self.ramp[:n], x0, out=index[:n])
            values += index[:n]
            if smallest >= low:
                count_low = 0
            else:
                count_low = int(np.count_nonzero(np.less(values, low, out=under_low[:n])))
            if largest < high:
                count_high = n
            else:
                count_high = int(np.count_nonzero(np.less(values, high, out=under_high[:n])))
            below_low += count_low
            below_high += count_high
            if count_high > count_low:  # some positions in [low, high): the ones below high but not low
                if largest < high:
                    inside = np.flatnonzero(~under_low[:n]) if count_low else np.arange(n)
                elif count_low:
                    inside = np.flatnonzero(np.not_equal(under_high[:n], under_low[:n], out=under_high[:n]))
                else:
                    inside = np.flatnonzero(under_high[:n])
                found_offsets.append(inside + x0)
                found_values.append(values[inside])
        if not found_offsets:
            return below_low, below_high, np.zeros(0, np.int64), np.zeros(0, np.float64)
        return below_low, below_high, np.concatenate(found_offsets), np.concatenate(found_values)


def _select(node: _NodePositions, first: int, stop: int) -> np.ndarray:
    """Node offsets of the samples at sorted slots ``[first, stop)``, in slot order.

    The slot-``r`` position lies within ``reach`` of ``r``, so thresholds a little below ``first`` and
    above ``stop`` bracket the slots; a scan counts the positions below each (their exact ranks) and
    lists those between, the only ones sorted. A threshold that does not bracket (near the node's
    ends, where offsets only move inwards) moves by what it missed and the scan runs again.
    """
    margin = 64 + 8 * math.isqrt(node.reach)  # many standard deviations of (rank - value) mid-node
    low, high = float(first - margin), float(stop + margin)
    while True:
        below_low, below_high, offsets, values = node.scan(low, high)
        if below_low > first:
            low -= below_low - first + margin
        elif below_high < stop:
            high += stop - below_high + margin
        else:
            break
    ordered = offsets[np.argsort(values)]
    chosen: np.ndarray = ordered[first - below_low : stop - below_low]
    return chosen


def py1e_values(draws: Py1eDraws, node: int, where: np.ndarray) -> np.ndarray:
    """The big ids at node offsets ``where``: the shuffles of the spans they fall in, replayed.

    Costs one shuffle per distinct span of ``where`` (a batch: at most a batch of spans).
    """
    s_begin, s_end = (int(v) for v in draws["node_spans"][node : node + 2])
    offsets = draws["span_offset"][s_begin:s_end]
    span_offset, span_lo, span_hi = draws["span_offset"], draws["span_lo"], draws["span_hi"]
    order = np.argsort(where, kind="stable")
    sorted_where = where[order]
    spans = s_begin + np.searchsorted(offsets, sorted_where, side="right") - 1
    cuts = [0, *(np.flatnonzero(np.diff(spans)) + 1).tolist(), len(spans)]
    out = np.empty(len(where), np.int64)
    replay = Replay()
    for begin, end in itertools.pairwise(cuts):
        if end <= begin:
            continue
        s = int(spans[begin])
        shuffled = np.arange(int(span_lo[s]), int(span_hi[s]), dtype=np.int64)
        replay.at(draws["shuffle_state"][s]).shuffle(shuffled)
        out[order[begin:end]] = shuffled[sorted_where[begin:end] - int(span_offset[s])]
    return out


def group_indices(keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(key, indices of keys equal to it)`` for each distinct key, in increasing key order."""
    order = np.argsort(keys, kind="stable")
    distinct, starts = np.unique(keys[order], return_index=True)
    ends = [*starts[1:].tolist(), len(order)]
    for key, begin, end in zip(distinct.tolist(), starts.tolist(), ends, strict=True):
        yield key, order[begin:end]
