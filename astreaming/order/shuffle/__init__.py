"""Shuffle algorithms: a permutation of an epoch's positions (position p takes big id ``perm[p]``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Container, Generator, Sequence

import numpy as np

from astreaming.errors import ConfigError, UnknownOptionError

__all__ = ["SHUFFLE_ALGOS", "check_shuffle_args", "get_shuffle", "iter_shuffle"]

ShuffleIter = Callable[
    [Sequence[int] | np.ndarray, int, int, int, int], Generator[tuple[int, np.ndarray | None], None, None]
]

#: algorithm -> its module here (``iter_<algo>`` in ``<algo>.py``), imported when first used: a walk
#: without shuffle imports none of them.
SHUFFLE_ALGOS = ("naive", "py1s", "py2s", "py1br", "py1e")

# Block-based algorithms draw integers from [0.75, 1.25) * block_size (py1br also [0, 0.75) * block_size).
_MIN_BLOCK = {"py1e": 1, "py1br": 2}


def iter_shuffle(
    algo: str,
    shuffle_units: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int,
    *,
    skip: Container[int] = (),
) -> Generator[tuple[int, np.ndarray | None], None, None]:
    """Yield the permutation piece by piece: ``(first_position, perm[first_position:...])`` in order.

    Pieces are canonical nodes (one piece for ``naive``). A consumer that needs only some positions can keep
    just those and stop early, so the whole permutation never has to be held at once.

    Args:
        skip: Canonical nodes the caller does not need. ``py1e`` then yields ``None`` for them and saves their
            positions and sort; the other algorithms ignore it (their cost is the draws themselves).

    Raises:
        UnknownOptionError: for an unknown ``algo``.
        ConfigError: for a ``block_size`` the algorithm cannot use, or a bad ``num_canonical_nodes``.
    """
    check_shuffle_args(algo, num_canonical_nodes, block_size)
    if algo == "py1e":
        from astreaming.order.shuffle.py1e import iter_py1e

        return iter_py1e(shuffle_units, num_canonical_nodes, seed, epoch, block_size, skip=skip)
    fn: ShuffleIter = getattr(importlib.import_module(f"{__name__}.{algo}"), f"iter_{algo}")
    return fn(shuffle_units, num_canonical_nodes, seed, epoch, block_size)


def check_shuffle_args(algo: str, num_canonical_nodes: int, block_size: int) -> None:
    """Refuse what :func:`iter_shuffle` cannot shuffle (the lazy shuffles check the same).

    Raises:
        UnknownOptionError: for an unknown ``algo``.
        ConfigError: for a ``block_size`` the algorithm cannot use, or a bad ``num_canonical_nodes``.
    """
    if algo not in SHUFFLE_ALGOS:
        raise UnknownOptionError(
            f"shuffle_algo: unknown algorithm {algo!r}; expected one of {sorted(SHUFFLE_ALGOS)}"
        )
    if num_canonical_nodes < 1:
        raise ConfigError(f"num_canonical_nodes must be >= 1, got {num_canonical_nodes}")
    if block_size < _MIN_BLOCK.get(algo, 0):
        raise ConfigError(
            f"shuffle_block_size {block_size} is too small for shuffle_algo {algo!r} (it needs at least "
            f"{_MIN_BLOCK[algo]}: block sizes are drawn from [0.75, 1.25) x shuffle_block_size)"
        )


def get_shuffle(
    algo: str,
    shard_sizes: Sequence[int] | np.ndarray,
    num_canonical_nodes: int,
    seed: int,
    epoch: int,
    block_size: int = 1 << 18,
) -> np.ndarray:
    """The epoch's full permutation (mosaicml-streaming's ``get_shuffle``).

    Args:
        algo: ``naive``, ``py1s``, ``py2s``, ``py1br`` or ``py1e``.
        shard_sizes: Shuffle unit sizes (each shard repeat is one unit).
        num_canonical_nodes: Canonical nodes.
        seed: Shuffle seed (the per-run shard order uses ``seed``, the rest ``seed + epoch``).
        epoch: Epoch.
        block_size: Shuffle block size (py1br, py1e).

    Returns:
        int64 array ``perm``: position p of the epoch takes big id ``perm[p]``.
    """
    pieces = [
        piece
        for _, piece in iter_shuffle(algo, shard_sizes, num_canonical_nodes, seed, epoch, block_size)
        if piece is not None
    ]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
