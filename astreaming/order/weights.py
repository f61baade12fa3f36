"""Stream weighting at init: turn each stream's proportion/repeat/choose into samples per epoch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from astreaming.errors import ConfigError

__all__ = ["StreamWeights", "WeightedStream", "apply_weights"]


@dataclass(frozen=True)
class StreamWeights:
    """The weighting arguments of one ``Stream`` (at most one of them set).

    Args:
        proportion: Relative weight, normalised over all streams.
        repeat: Multiplier on the stream's sample count.
        choose: Absolute samples per epoch.
    """

    proportion: float | None = None
    repeat: float | None = None
    choose: int | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.proportion, self.repeat, self.choose) if v is not None]
        if len(given) > 1:
            raise ConfigError(
                "Stream: at most one of `proportion`, `repeat`, and `choose` may be specified; the others "
                f"are derived (got proportion={self.proportion}, repeat={self.repeat}, choose={self.choose})"
            )
        for name in ("proportion", "repeat", "choose"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"Stream: `{name}` must be non-negative, got {value}")


@dataclass(frozen=True)
class WeightedStream:
    """A stream's weights after :func:`apply_weights`: all three are set.

    Attributes:
        choose: Samples drawn from the stream per epoch.
        repeat: ``choose / samples``.
        proportion: The stream's share of the epoch.
    """

    choose: int
    repeat: float
    proportion: float


def apply_weights(
    streams: Sequence[StreamWeights],
    samples_per_stream: Sequence[int] | np.ndarray,
    choose_per_epoch: int | None,
    seed: int,
) -> tuple[list[WeightedStream], int]:
    """Resolve every stream's samples per epoch, as mosaicml-streaming's ``Stream.apply_weights`` does.

    Relative weights (all streams give ``proportion``) split ``choose_per_epoch`` (default: all samples) by
    proportion, flooring, and hand the shortfall to streams drawn with ``default_rng(seed)``. Unspecified
    weights with ``choose_per_epoch`` are treated as proportions equal to the stream sizes. Absolute weights
    (``repeat``, ``choose``, or none) give ``floor(repeat * samples)``, ``choose`` or ``samples``.

    Args:
        streams: Each stream's weighting arguments.
        samples_per_stream: Unique samples in each stream.
        choose_per_epoch: The dataset's ``epoch_size`` (None: unspecified).
        seed: The dataset's ``shuffle_seed``.

    Returns:
        The resolved weights per stream, and the epoch size (sum of ``choose``).

    Raises:
        ConfigError: for relative and absolute weights mixed, ``epoch_size`` with absolute weights, or
            relative weights that sum to 0.
    """
    samples = np.asarray(samples_per_stream, dtype=np.int64)
    if len(streams) != len(samples):
        raise ConfigError(f"apply_weights: {len(streams)} streams but {len(samples)} sample counts")
    if choose_per_epoch is not None and choose_per_epoch < 0:
        raise ConfigError(f"epoch_size must be non-negative, got {choose_per_epoch}")
    relative = [s.proportion is not None for s in streams]
    for index, is_relative in enumerate(relative):
        if is_relative != relative[0]:
            raise ConfigError(
                "Relative (`proportion`) and absolute (`repeat`, `choose`, none) stream weights are "
                f"incompatible with each other (error in stream {index})"
            )
    unweighted = all(s.repeat is None and s.choose is None and s.proportion is None for s in streams)
    if relative and relative[0]:
        proportions = np.array([s.proportion for s in streams], dtype=np.float64)
        return _relative(samples, proportions, choose_per_epoch, seed)
    if choose_per_epoch is not None:
        if not unweighted:
            raise ConfigError(
                "Only provide `choose` (epoch_size) when weighting streams relatively: epoch_size "
                f"{choose_per_epoch} cannot be combined with `repeat` or `choose` stream weights"
            )
        return _relative(samples, samples.astype(np.float64), choose_per_epoch, seed)
    return _absolute(streams, samples)


def _relative(
    samples: np.ndarray, proportions: np.ndarray, choose_per_epoch: int | None, seed: int
) -> tuple[list[WeightedStream], int]:
    epoch_size = int(samples.sum()) if choose_per_epoch is None else int(choose_per_epoch)
    if not proportions.sum() > 0:
        # mosaic divides by the zero sum and fails in numpy (NaN cast to int64, then a ValueError).
        raise ConfigError(
            f"stream weights sum to 0 ({proportions.tolist()}): at least one stream needs a positive "
            "`proportion` (or, with epoch_size and no weights, samples)"
        )
    proportions = proportions / proportions.sum()
    choose = (epoch_size * proportions).astype(np.int64)
    shortfall = epoch_size - int(choose.sum())
    # The same generator call as mosaic, so the shortfall lands on the same streams.
    picked = np.random.default_rng(seed).choice(len(samples), shortfall, replace=False)
    choose[picked] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        repeat = choose / samples
    return [
        WeightedStream(int(c), float(r), float(p))
        for c, r, p in zip(choose, repeat, proportions, strict=True)
    ], epoch_size


def _absolute(streams: Sequence[StreamWeights], samples: np.ndarray) -> tuple[list[WeightedStream], int]:
    choose = np.empty(len(samples), dtype=np.int64)
    for index, (stream, count) in enumerate(zip(streams, samples, strict=True)):
        if stream.repeat is not None:
            choose[index] = int(stream.repeat * int(count))
        elif stream.choose is not None:
            choose[index] = int(stream.choose)
        else:
            choose[index] = count
    epoch_size = int(choose.sum())
    if epoch_size == 0:
        # mosaic divides 0 by 0 here (numpy RuntimeWarning) and reports NaN proportions; keep both.
        warnings.warn(
            "every stream chooses 0 samples per epoch: stream proportions are undefined (NaN)",
            RuntimeWarning,
            stacklevel=3,
        )
        proportion = np.full(len(samples), np.nan)
    else:
        proportion = choose / epoch_size
    with np.errstate(divide="ignore", invalid="ignore"):
        repeat = choose / samples
    return [
        WeightedStream(int(c), float(r), float(p)) for c, r, p in zip(choose, repeat, proportion, strict=True)
    ], epoch_size
