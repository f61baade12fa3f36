"""Which samples of each shard a stream takes in an epoch when it chooses a non-whole number of copies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astreaming.errors import ConfigError

__all__ = ["get_sampling"]


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
    # Picks in shard order: ceil(size / granularity) per shard, the last one holding what is left.
    picks_per_shard = -(-sizes // granularity)
    num_picks = int(picks_per_shard.sum())
    pick_shard = np.repeat(np.arange(len(sizes)), picks_per_shard)
    pick_size = np.full(num_picks, granularity, dtype=np.int64)
    # mosaic writes each shard's last pick size at index cumsum - 1 for EVERY shard, in shard order: a
    # 0-sample shard writes `granularity` over the previous shard's last pick (or the very last pick). That
    # changes which samples are chosen, so it is kept for identical order.
    last_pick = np.cumsum(picks_per_shard) - 1
    if num_picks:
        for index, value in zip(
            last_pick.tolist(), (sizes - (picks_per_shard - 1) * granularity).tolist(), strict=True
        ):
            pick_size[index] = value
    order = np.random.default_rng(seed + epoch if use_epoch else seed).permutation(num_picks)
    # Fill greedily in pick order until the remainder is used up (vectorised: cumulative sizes).
    taken = pick_size[order]
    before = np.cumsum(taken) - taken
    take = np.clip(rem - before, 0, taken)
    return result + np.bincount(pick_shard[order], weights=take, minlength=len(sizes)).astype(np.int64)
