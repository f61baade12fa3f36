"""The shared prelude of the span-based shuffles: shard order per run, split at canonical node boundaries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astreaming.errors import ConfigError

__all__ = ["NodeSpans", "divide_spans", "node_bounds"]

Span = tuple[int, int]


def node_bounds(num_samples: int, num_canonical_nodes: int) -> np.ndarray:
    """Positions where canonical nodes start: node k covers ``[b[k], b[k+1])`` with ``b[k] = N*k // C``."""
    return np.array(
        [num_samples * k // num_canonical_nodes for k in range(num_canonical_nodes + 1)], np.int64
    )


def divide_spans(spans: Sequence[Span], num_samples: int, num_parts: int) -> tuple[list[Span], list[Span]]:
    """Cut spans, in order, into ``num_parts`` parts ending at ``N*(k+1)//num_parts``.

    A span crossing a boundary is split: its head ends the current part, its tail starts the next.

    Returns:
        The (possibly split) spans, and for each part the ``[begin, end)`` range of its spans in that list.
    """
    pending = list(spans)
    out: list[Span] = []
    parts: list[Span] = []
    index, so_far = 0, 0
    for part in range(num_parts):
        part_end = num_samples * (part + 1) // num_parts
        begin = len(out)
        while index < len(pending):
            start, stop = pending[index]
            size = stop - start
            if so_far + size > part_end:
                if so_far < part_end:
                    split = part_end - so_far
                    out.append((start, start + split))
                    pending[index] = (start + split, stop)
                    so_far += split
                break
            out.append((start, stop))
            index += 1
            so_far += size
        parts.append((begin, len(out)))
    return out, parts


class NodeSpans:
    """Spans per canonical node in this epoch's order, and the epoch generator positioned after drawing them.

    The run generator ``default_rng(seed)`` shuffles the units once per run; the spans are split at canonical
    node boundaries; then ``default_rng(seed + epoch)`` shuffles each node's span list in node order.
    """

    def __init__(
        self, shuffle_units: Sequence[int] | np.ndarray, num_canonical_nodes: int, seed: int, epoch: int
    ) -> None:
        sizes = np.asarray(shuffle_units, dtype=np.int64)
        ends = np.cumsum(sizes)
        self.num_samples = int(ends[-1]) if len(ends) else 0
        starts = ends - sizes
        # Shuffling an index array draws exactly what shuffling the list of spans would.
        order = np.arange(len(sizes))
        np.random.default_rng(seed).shuffle(order)
        spans = [(int(starts[i]), int(ends[i])) for i in order]
        self.spans, self.parts = divide_spans(spans, self.num_samples, num_canonical_nodes)
        self.epoch_rng = np.random.default_rng(seed + epoch)
        for begin, end in self.parts:
            if end - begin > 1:
                local = np.arange(begin, end)
                self.epoch_rng.shuffle(local)
                self.spans[begin:end] = [self.spans[i] for i in local]
        self.bounds = node_bounds(self.num_samples, num_canonical_nodes)

    def require_samples_per_node(self) -> None:
        """py1e's precondition (mosaic's message): every canonical node gets at least one sample.

        Raises:
            ConfigError: if a canonical node would get no samples (fewer samples than canonical nodes).
        """
        if np.any(np.diff(self.bounds) == 0):
            raise ConfigError(
                f"The number of samples assigned to a canonical node is 0: the stream has {self.num_samples} "
                f"samples for {len(self.bounds) - 1} canonical nodes (num_canonical_nodes). Check the "
                "dataset's index.json, or reduce num_canonical_nodes."
            )

    def node(self, k: int) -> list[Span]:
        """The spans of canonical node ``k`` in epoch order."""
        begin, end = self.parts[k]
        return self.spans[begin:end]
