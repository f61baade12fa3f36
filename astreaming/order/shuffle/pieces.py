"""``py1s``, ``py2s`` and ``py1br`` computed lazily: the epoch's draws replayed once, pieces redone on demand.

These shuffles permute each *piece* of the epoch on its own: a span (py1s), a unit's slice within a
canonical node (py2s), a block of a node (py1br). A piece's output depends only on its input (known
from the spans) and on the generator state before its shuffle. So one pass replays the epoch's draws
(shuffling a scratch buffer per piece: the number of draws a shuffle takes depends on the values drawn,
so it cannot be skipped) and records each piece's place and state; it holds O(pieces) memory, and its
result is shared between processes by the caller. A position's big id is then one shuffle of its piece,
redone from the recorded state.

py1br's blocks are large (``shuffle_block_size``): the caller shares a block's output like a py1e
window. Its first two blocks of a node can overlap (mosaic's stagger): overlapping blocks are shuffled
in order as one *cluster*.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from astreaming.order.shuffle._replay import STATE_WIDTH, Replay, pack_state
from astreaming.order.shuffle._spans import NodeSpans, divide_spans

__all__ = [
    "ClusterSource",
    "PieceDraws",
    "piece_values",
    "py1br_cluster",
    "py1br_draws",
    "py1br_values",
    "py1s_draws",
    "py2s_draws",
]

#: Arrays of a draws pass (see each ``*_draws`` function).
PieceDraws = dict[str, np.ndarray]
#: The output of py1br cluster ``index`` (the caller may share it between processes).
ClusterSource = Callable[[int], np.ndarray]


class _Recorder:
    """Replays shuffles of given lengths on a scratch buffer, recording the state before each."""

    def __init__(self, rng: np.random.Generator, lengths: Sequence[int]) -> None:
        self.rng = rng
        self.scratch = np.empty(max(lengths, default=0), np.int64)
        self.states: list[list[int]] = []

    def shuffle(self, length: int) -> None:
        if length > len(self.scratch):
            self.scratch = np.empty(length, np.int64)
        self.states.append(pack_state(self.rng.bit_generator))
        self.rng.shuffle(self.scratch[:length])

    def array(self) -> np.ndarray:
        return np.array(self.states, np.uint64).reshape(-1, STATE_WIDTH)


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.asarray(np.cumsum(lengths) - lengths, np.int64)


def py1s_draws(
    shuffle_units: Sequence[int] | np.ndarray, num_canonical_nodes: int, seed: int, epoch: int
) -> PieceDraws:
    """py1s: each span (in epoch order) is ``arange(lo, hi)`` shuffled by the epoch generator.

    Returns:
        ``start`` (epoch position of each piece), ``lo``/``hi`` (its big ids before the shuffle) and
        ``state`` ((pieces, 6) generator states before its shuffle).
    """
    layout = NodeSpans(shuffle_units, num_canonical_nodes, seed, epoch)
    lo = np.array([s[0] for s in layout.spans], np.int64)
    hi = np.array([s[1] for s in layout.spans], np.int64)
    lengths = (hi - lo).tolist()
    recorder = _Recorder(layout.epoch_rng, lengths)
    for length in lengths:
        recorder.shuffle(length)
    return {"start": _starts(hi - lo), "lo": lo, "hi": hi, "state": recorder.array()}


def py2s_draws(
    shuffle_units: Sequence[int] | np.ndarray, num_canonical_nodes: int, seed: int, epoch: int
) -> PieceDraws:
    """py2s: a unit's samples shuffled once per run, sliced at canonical nodes, shuffled again per epoch.

    Returns:
        ``start`` (epoch position of each piece), ``lo``/``hi`` (its slice of the run layout),
        ``state`` (epoch generator state before its shuffle); per unit in run order: ``unit_at`` (its
        run-layout offset), ``unit_base`` (its first big id), ``unit_size`` and ``unit_state`` (run
        generator state before its shuffle).
    """
    sizes = np.asarray(shuffle_units, dtype=np.int64)
    num_samples = int(sizes.sum())
    run_rng = np.random.default_rng(seed)
    order = np.arange(len(sizes))
    run_rng.shuffle(order)
    run_sizes = sizes[order]
    runs = _Recorder(run_rng, run_sizes.tolist())
    for size in run_sizes.tolist():
        runs.shuffle(size)
    unit_at = _starts(run_sizes)
    spans, parts = divide_spans(
        list(zip(unit_at.tolist(), (unit_at + run_sizes).tolist(), strict=True)),
        num_samples,
        num_canonical_nodes,
    )
    epoch_rng = np.random.default_rng(seed + epoch)
    pieces = _Recorder(epoch_rng, [hi - lo for lo, hi in spans])
    ordered: list[tuple[int, int]] = []
    for begin, end in parts:
        local = np.arange(end - begin)
        epoch_rng.shuffle(local)
        for index in local.tolist():
            lo, hi = spans[begin + index]
            ordered.append((lo, hi))
            pieces.shuffle(hi - lo)
    piece_lo = np.array([p[0] for p in ordered], np.int64)
    piece_hi = np.array([p[1] for p in ordered], np.int64)
    return {
        "start": _starts(piece_hi - piece_lo),
        "lo": piece_lo,
        "hi": piece_hi,
        "state": pieces.array(),
        "unit_at": unit_at,
        "unit_base": _starts(sizes)[order],
        "unit_size": run_sizes,
        "unit_state": runs.array(),
    }


def _piece_input(draws: PieceDraws, piece: int, replay: Replay) -> np.ndarray:
    """A piece's samples before its epoch shuffle."""
    lo, hi = int(draws["lo"][piece]), int(draws["hi"][piece])
    if "unit_at" not in draws:  # py1s: the span's big ids
        return np.arange(lo, hi, dtype=np.int64)
    # py2s: the slice of the run layout lies within one unit, shuffled once per run.
    unit = int(np.searchsorted(draws["unit_at"], lo, side="right")) - 1
    at, base, size = (int(draws[name][unit]) for name in ("unit_at", "unit_base", "unit_size"))
    whole = np.arange(base, base + size, dtype=np.int64)
    replay.at(draws["unit_state"][unit]).shuffle(whole)
    return whole[lo - at : hi - at]


def piece_values(draws: PieceDraws, positions: np.ndarray) -> np.ndarray:
    """The big ids at epoch ``positions`` (py1s, py2s): one shuffle per distinct piece, redone."""
    positions = np.asarray(positions, np.int64)
    piece = np.searchsorted(draws["start"], positions, side="right") - 1
    out = np.empty(len(positions), np.int64)
    replay = Replay()
    for index, pick in _groups(piece):
        values = _piece_input(draws, index, replay)
        replay.at(draws["state"][index]).shuffle(values)
        out[pick] = values[positions[pick] - int(draws["start"][index])]
    return out


def py1br_draws(
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
) -> PieceDraws:
    """py1br: each node's spans laid out, then blocks of it shuffled in order by the epoch generator.

    Returns:
        ``span_start``/``span_lo``/``span_hi`` (each span's epoch position and big ids before the
        shuffles), ``block_lo``/``block_hi`` (epoch positions), ``state`` (generator state before each
        block's shuffle), and ``cluster_lo``/``cluster_hi``/``cluster_blocks`` (runs of overlapping
        blocks: their epoch range and C + 1-style block index bounds).
    """
    layout = NodeSpans(shuffle_units, num_canonical_nodes, seed, epoch)
    rng = layout.epoch_rng
    stagger = rng.integers(0, int(0.75 * block_size), (num_canonical_nodes,))
    low, high = int(0.75 * block_size), int(1.25 * block_size)
    blocks: list[tuple[int, int]] = []
    recorder = _Recorder(rng, [])
    for k in range(num_canonical_nodes):
        start, stop = int(layout.bounds[k]), int(layout.bounds[k + 1])
        size, shift, end = stop - start, int(stagger[k]), 0
        node_blocks: list[tuple[int, int]] = []
        while end < size:
            drawn = int(rng.integers(low, high))
            block_lo, block_hi = max(end - shift, 0), min(end + drawn - shift, size)
            node_blocks.append((start + block_lo, start + block_hi))
            end += block_hi - block_lo
        for block_lo, block_hi in node_blocks:
            recorder.shuffle(block_hi - block_lo)
        blocks.extend(node_blocks)
    span_lo = np.array([s[0] for s in layout.spans], np.int64)
    span_hi = np.array([s[1] for s in layout.spans], np.int64)
    starts = np.array([b[0] for b in blocks], np.int64)
    stops = np.array([b[1] for b in blocks], np.int64)
    clusters = _clusters(starts, stops)
    return {
        "span_start": _starts(span_hi - span_lo),
        "span_lo": span_lo,
        "span_hi": span_hi,
        "block_lo": starts,
        "block_hi": stops,
        "state": recorder.array(),
        "cluster_lo": np.array([int(starts[a:b].min()) for a, b in clusters], np.int64),
        "cluster_hi": np.array([int(stops[a:b].max()) for a, b in clusters], np.int64),
        "cluster_blocks": np.array([a for a, _ in clusters] + [len(blocks)], np.int64),
    }


def _clusters(block_lo: np.ndarray, block_hi: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive blocks, each overlapping an earlier block of its run.

    Blocks of one node follow each other; a node's first block starts at or after every earlier block's
    end, so runs never cross nodes.
    """
    runs: list[tuple[int, int]] = []
    reach = 0
    for index, (lo, hi) in enumerate(zip(block_lo.tolist(), block_hi.tolist(), strict=True)):
        if runs and lo < reach:
            runs[-1] = (runs[-1][0], index + 1)
            reach = max(reach, hi)
        else:
            runs.append((index, index + 1))
            reach = hi
    return runs


def _laid_out(draws: PieceDraws, positions: np.ndarray) -> np.ndarray:
    """Big ids at epoch ``positions`` before any block shuffle (the spans in epoch order)."""
    starts = draws["span_start"]
    span = np.searchsorted(starts, positions, side="right") - 1
    laid: np.ndarray = draws["span_lo"][span] + (positions - starts[span])
    return laid


def py1br_cluster(draws: PieceDraws, index: int) -> np.ndarray:
    """The output of cluster ``index``: its positions laid out, then its blocks shuffled in order."""
    lo, hi = int(draws["cluster_lo"][index]), int(draws["cluster_hi"][index])
    values = _laid_out(draws, np.arange(lo, hi, dtype=np.int64))
    replay = Replay()
    first, stop = (int(v) for v in draws["cluster_blocks"][index : index + 2])
    for block in range(first, stop):
        block_lo, block_hi = int(draws["block_lo"][block]), int(draws["block_hi"][block])
        replay.at(draws["state"][block]).shuffle(values[block_lo - lo : block_hi - lo])
    return values


def py1br_values(draws: PieceDraws, positions: np.ndarray, cluster: ClusterSource) -> np.ndarray:
    """The big ids at epoch ``positions`` (py1br); ``cluster(i)`` gives cluster i's output."""
    positions = np.asarray(positions, np.int64)
    index = np.searchsorted(draws["cluster_lo"], positions, side="right") - 1
    inside = (index >= 0) & (positions < draws["cluster_hi"][np.maximum(index, 0)])
    out = np.empty(len(positions), np.int64)
    outside = np.flatnonzero(~inside)
    out[outside] = _laid_out(draws, positions[outside])  # a node's tail past its last block: unshuffled
    for number, pick in _groups(np.where(inside, index, -1)):
        if number >= 0:
            out[pick] = cluster(number)[positions[pick] - int(draws["cluster_lo"][number])]
    return out


def _groups(keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(key, indices holding it)`` for each distinct key, in increasing key order."""
    order = np.argsort(keys, kind="stable")
    cuts = [0, *(np.flatnonzero(np.diff(keys[order])) + 1).tolist(), len(order)]
    return [(int(keys[order[a]]), order[a:b]) for a, b in itertools.pairwise(cuts) if b > a]
