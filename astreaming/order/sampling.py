"""Which samples of each shard a stream takes in an epoch when it chooses a non-whole number of copies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astreaming.errors import ConfigError

__all__ = ["get_sampling"]

#: Picks filled per step (the only per-pick arrays besides the int32 order).
_CHUNK = 1 << 20


def get_sampling(
    samples_per_shard: Sequence[int] | np.ndarray,
    choose: int,
    granularity: int,
    seed: int,
    epoch: int,
    use_epoch: bool,
) -> np.ndarray:
    """Samples to take from each shard of one stream this epoch (mosaicml-streaming's ``get_sampling``).

    A whole multiple of the stream is taken from every shard alike. Otherwise each shard is cut into picks of
    ``granularity`` samples (the last pick of a shard holds the remainder), the picks are visited in the
    order ``default_rng(seed + epoch if use_epoch else seed).permutation(num_picks)``, and the fractional
    part of ``choose`` is filled from them.

    Args:
        samples_per_shard: Samples in each shard of the stream.
        choose: Samples the stream takes this epoch.
        granularity: Samples per pick.
        seed: Shuffle seed.
        epoch: Epoch.
        use_epoch: Whether the draw changes every epoch.

    Returns:
        int64 array: samples chosen from each shard.

    Raises:
        ConfigError: if an argument is negative (``granularity`` must be positive).
    """
    for name, value, minimum in (
        ("choose", choose, 0),
        ("granularity", granularity, 1),
        ("seed", seed, 0),
        ("epoch", epoch, 0),
    ):
        if value < minimum:
            kind = "positive" if minimum else "non-negative"
            raise ConfigError(f"`{name}` must be a {kind} integer, but got: {value}.")
    sizes = np.asarray(samples_per_shard, dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        # An empty stream has nothing to choose from (mosaic divides by zero here).
        if choose:
            raise ConfigError(f"cannot choose {choose} samples from a stream with 0 samples")
        return np.zeros_like(sizes)
    whole, rem = divmod(int(choose), total)
    result = sizes * whole
    if not rem:
        return result
    # Picks in shard order: ceil(size / granularity) per shard, the last one holding what is left. Pick i
    # belongs to the shard whose cumulative pick count first exceeds i.
    picks_per_shard = -(-sizes // granularity)
    ends = np.cumsum(picks_per_shard)
    num_picks = int(ends[-1]) if len(ends) else 0
    # mosaic writes each shard's last pick size at index cumsum - 1 for EVERY shard, in shard order: a
    # 0-sample shard writes `granularity` over the previous shard's last pick (or the very last pick). That
    # changes which samples are chosen, so it is kept for identical order: the last write to an index wins.
    written = (ends - 1) % max(num_picks, 1)
    values = sizes - (picks_per_shard - 1) * granularity
    special, last_write = np.unique(written[::-1], return_index=True)
    special_size = values[::-1][last_write]
    # mosaic's permutation(num_picks) is a shuffle of arange(num_picks): the same draws in int32, without
    # the per-pick int64 arrays (a stream's picks can be its samples: 1B of them).
    order = np.arange(num_picks, dtype=np.int32 if num_picks < 2**31 - 1 else np.int64)
    np.random.default_rng(seed + epoch if use_epoch else seed).shuffle(order)
    # Fill greedily in pick order until the remainder is used up, a chunk of picks at a time.
    taken_before = 0
    for first in range(0, num_picks, _CHUNK):
        picks = np.asarray(order[first : first + _CHUNK], np.int64)
        size = np.full(len(picks), granularity, np.int64)
        at = np.minimum(np.searchsorted(special, picks), len(special) - 1)
        hit = special[at] == picks
        size[hit] = special_size[at[hit]]
        before = taken_before + np.cumsum(size) - size
        take = np.clip(rem - before, 0, size)
        shard = np.searchsorted(ends, picks, side="right")
        result = result + np.bincount(shard, weights=take, minlength=len(sizes)).astype(np.int64)
        taken_before += int(size.sum())
        if taken_before >= rem:
            break
    return result
