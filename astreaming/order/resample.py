"""Per-epoch resampling: the epoch's shuffle units and the map from epoch positions to sample ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.sampling import get_sampling

__all__ = ["Resampled", "resample_streams"]

_SAMPLING_METHODS = ("balanced", "fixed")


@dataclass(frozen=True)
class Resampled:
    """One epoch's resampled view of the dataset, kept compact (O(units), not O(samples)).

    The epoch is a sequence of *units*: each whole repeat of a shard, and each partial repeat, is one unit
    (a "pseudo-shard" the shuffle treats as a span). Big id ``b`` (a position in the epoch before shuffling)
    falls in unit ``u``; a whole unit maps it to ``unit_base[u] + (b - unit_start[u])``, a partial one to a
    sorted draw of the shard's samples kept in ``partial_ids``.

    Attributes:
        choose_per_stream: Samples each resampled stream contributes.
        shuffle_units: Size of each unit, in epoch order.
        unit_base: Global sample id of the first sample of each unit's shard.
        unit_partial: Offset of a partial unit's ids in ``partial_ids``, or -1 for a whole unit.
        partial_ids: Global sample ids of all partial units, concatenated.
    """

    choose_per_stream: np.ndarray
    shuffle_units: np.ndarray
    unit_base: np.ndarray
    unit_partial: np.ndarray
    partial_ids: np.ndarray

    @property
    def epoch_size(self) -> int:
        """Number of big ids (samples in the epoch before padding)."""
        return int(self.shuffle_units.sum())

    @property
    def unit_start(self) -> np.ndarray:
        """First big id of each unit."""
        return np.asarray(np.cumsum(self.shuffle_units) - self.shuffle_units, dtype=np.int64)

    def small_per_big(self) -> np.ndarray:
        """The full map from big id to sample id (O(epoch) memory: for small data and tests)."""
        return self.map(np.arange(self.epoch_size, dtype=np.int64))

    def map(self, big: np.ndarray) -> np.ndarray:
        """Map big ids to sample ids; -1 stays -1."""
        big = np.asarray(big, dtype=np.int64)
        valid = big >= 0
        starts = self.unit_start
        safe = np.where(valid, big, 0)
        unit = np.searchsorted(starts, safe, side="right") - 1
        offset = safe - starts[unit]
        partial = self.unit_partial[unit]
        out = self.unit_base[unit] + offset
        is_partial = partial >= 0
        if is_partial.any():
            out[is_partial] = self.partial_ids[partial[is_partial] + offset[is_partial]]
        out[~valid] = -1
        return np.asarray(out, dtype=np.int64)


def resample_streams(
    samples_per_shard: Sequence[Sequence[int] | np.ndarray],
    choose_per_stream: Sequence[int],
    *,
    seed: int,
    epoch: int,
    sampling_method: str = "balanced",
    sampling_granularity: int = 1,
    shuffle: bool = False,
    stream_id: int | None = None,
) -> Resampled:
    """Resample the streams for one epoch (mosaicml-streaming's ``StreamingDataset.resample_streams``).

    One generator is used for the whole call: ``default_rng(seed + epoch)`` for ``balanced``,
    ``default_rng(seed)`` for ``fixed``; partial repeats draw ``choice(shard_samples, remainder,
    replace=False)`` from it, in stream then shard order.

    Args:
        samples_per_shard: For each stream, samples in each of its shards (streams in dataset order).
        choose_per_stream: Samples each stream takes per epoch (after ``apply_weights``).
        seed: ``shuffle_seed``.
        epoch: Epoch.
        sampling_method: ``balanced`` or ``fixed``.
        sampling_granularity: Samples per pick for the fractional part (see :func:`get_sampling`).
        shuffle: Whether the dataset shuffles (``balanced`` picks change per epoch only when shuffling).
        stream_id: Resample this stream alone (per-stream batching methods); None for all streams.

    Raises:
        UnknownOptionError: for an unknown ``sampling_method``.
        ConfigError: for a bad granularity or stream id.
    """
    if sampling_method not in _SAMPLING_METHODS:
        from astreaming.errors import UnknownOptionError

        raise UnknownOptionError(
            f"sampling_method: unknown method {sampling_method!r}; expected one of {_SAMPLING_METHODS}"
        )
    if sampling_granularity < 1:
        raise ConfigError(f"sampling_granularity must be a positive integer, got {sampling_granularity}")
    balanced = sampling_method == "balanced"
    # Made on first use: most epochs draw no partial repeat, and importing numpy.random costs a first
    # sample 0.05-0.1 s.
    rng: np.random.Generator | None = None
    streams = range(len(samples_per_shard)) if stream_id is None else [stream_id]
    offsets = np.cumsum([0] + [int(np.sum(s, dtype=np.int64)) for s in samples_per_shard])
    units: list[np.ndarray] = []
    bases: list[np.ndarray] = []
    partial_flags: list[np.ndarray] = []
    partial_ids: list[np.ndarray] = []
    chosen: list[int] = []
    partial_total = 0
    for sid in streams:
        if not 0 <= sid < len(samples_per_shard):
            raise ConfigError(f"stream_id {sid} out of range for {len(samples_per_shard)} streams")
        sizes = np.asarray(samples_per_shard[sid], dtype=np.int64)
        choose = int(choose_per_stream[sid])
        chosen.append(choose)
        per_shard = get_sampling(sizes, choose, sampling_granularity, seed, epoch, shuffle and balanced)
        shard_base = offsets[sid] + np.cumsum(sizes) - sizes
        nonempty = sizes > 0
        # Whole repeats and remainders, without numpy's divide-by-zero noise on 0-sample shards.
        whole = np.where(nonempty, per_shard // np.where(nonempty, sizes, 1), 0)
        rem = np.where(nonempty, per_shard - whole * sizes, 0)
        # Units in shard order: `whole` full copies of each shard, then its partial copy if any (vectorised;
        # only partial copies need the generator, called in shard order as mosaic does).
        counts = whole + (rem > 0)
        unit_shard = np.repeat(np.arange(len(sizes)), counts)
        within = np.arange(len(unit_shard)) - np.repeat(np.cumsum(counts) - counts, counts)
        is_partial = within == whole[unit_shard]
        flags = np.full(len(unit_shard), -1, dtype=np.int64)
        for unit in np.flatnonzero(is_partial).tolist():
            shard = int(unit_shard[unit])
            extra, base = int(rem[shard]), int(shard_base[shard])
            if rng is None:
                rng = np.random.default_rng(seed + epoch if balanced else seed)
            picked = np.sort(rng.choice(int(sizes[shard]), extra, replace=False)).astype(np.int64)
            partial_ids.append(base + picked)
            flags[unit] = partial_total
            partial_total += extra
        units.append(np.where(is_partial, rem[unit_shard], sizes[unit_shard]).astype(np.int64))
        bases.append(shard_base[unit_shard].astype(np.int64))
        partial_flags.append(flags)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    return Resampled(
        choose_per_stream=np.array(chosen, dtype=np.int64),
        shuffle_units=cat(units),
        unit_base=cat(bases),
        unit_partial=cat(partial_flags),
        partial_ids=cat(partial_ids),
    )
