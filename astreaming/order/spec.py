"""The order-relevant description of a dataset for one run: what every worker needs to plan an epoch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from astreaming._units import number_abbrev_to_int
from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.order.weights import StreamWeights, apply_weights

__all__ = [
    "BATCHING_METHODS",
    "EpochSpec",
    "default_num_canonical_nodes",
    "default_shuffle_block_size",
    "parse_epoch_size",
]

BATCHING_METHODS = ("random", "stratified", "per_stream", "device_per_stream")
PARTITION_ALGOS = ("orig", "relaxed")
SHUFFLE_ALGOS = ("naive", "py1s", "py2s", "py1br", "py1e")
SAMPLING_METHODS = ("balanced", "fixed")


def default_num_canonical_nodes(shuffle_algo: str, num_nodes: int) -> int:
    """mosaic's default: 64 per physical node for py1s/py2s, else one per node (even without shuffling)."""
    return 64 * num_nodes if shuffle_algo in ("py1s", "py2s") else num_nodes


def default_shuffle_block_size(num_canonical_nodes: int) -> int:
    """mosaic's default block: ``max(4_000_000 // num_canonical_nodes, 1 << 18)``."""
    return max(4_000_000 // num_canonical_nodes, 1 << 18)


def parse_epoch_size(epoch_size: int | str | None) -> int | None:
    """``None``, an int, or a string such as ``"100k"``/``"64M"``/``"77b"``; negative is refused."""
    if epoch_size is None:
        return None
    value = number_abbrev_to_int(epoch_size, name="epoch_size")
    if value < 0:
        raise ConfigError(f"epoch_size must be non-negative, got {epoch_size!r}")
    return value


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise UnknownOptionError(f"{name}: unknown value {value!r}; expected one of {list(options)}")
    return value


@dataclass(frozen=True, eq=False)
class EpochSpec:
    """Every dataset attribute that decides sample order, fixed for a run (defaults already resolved).

    Build it with :meth:`build`. Arrays are treated as read-only.

    Attributes:
        samples_per_shard: Per stream, the sample count of each shard (streams in dataset order).
        choose_per_stream: Samples per epoch of each stream (after ``apply_weights``).
        proportion_per_stream: Each stream's proportion (after ``apply_weights``).
        epoch_size: Sum of ``choose_per_stream``.
    """

    samples_per_shard: tuple[np.ndarray, ...]
    choose_per_stream: tuple[int, ...]
    proportion_per_stream: tuple[float, ...]
    epoch_size: int
    batch_size: int
    num_canonical_nodes: int
    shuffle: bool = False
    shuffle_algo: str = "py1e"
    shuffle_seed: int = 9176
    shuffle_block_size: int = 1 << 18
    partition_algo: str = "relaxed"
    batching_method: str = "random"
    sampling_method: str = "balanced"
    sampling_granularity: int = 1
    initial_physical_nodes: int | None = None
    replication: int | None = None
    shard_offsets: np.ndarray = field(init=False, repr=False)
    sample_offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _choice("shuffle_algo", self.shuffle_algo, SHUFFLE_ALGOS)
        _choice("partition_algo", self.partition_algo, PARTITION_ALGOS)
        _choice("batching_method", self.batching_method, BATCHING_METHODS)
        _choice("sampling_method", self.sampling_method, SAMPLING_METHODS)
        for name in ("batch_size", "num_canonical_nodes", "sampling_granularity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.shuffle_seed < 0:
            raise ConfigError(f"shuffle_seed must be non-negative, got {self.shuffle_seed}")
        sizes = (
            np.concatenate([np.asarray(s, np.int64) for s in self.samples_per_shard])
            if self.samples_per_shard
            else np.zeros(0, np.int64)
        )
        # Global shard index -> first global sample id (searchsorted maps sample id -> shard).
        object.__setattr__(self, "sample_offsets", np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        object.__setattr__(
            self, "shard_offsets", np.cumsum([0] + [len(s) for s in self.samples_per_shard]).astype(np.int64)
        )

    @classmethod
    def build(
        cls,
        samples_per_shard: Sequence[Sequence[int] | np.ndarray],
        *,
        batch_size: int,
        num_nodes: int,
        weights: Sequence[StreamWeights] | None = None,
        epoch_size: int | str | None = None,
        num_canonical_nodes: int | None = None,
        shuffle: bool = False,
        shuffle_algo: str = "py1e",
        shuffle_seed: int = 9176,
        shuffle_block_size: int | None = None,
        partition_algo: str = "relaxed",
        batching_method: str = "random",
        sampling_method: str = "balanced",
        sampling_granularity: int = 1,
        initial_physical_nodes: int | None = None,
        replication: int | None = None,
    ) -> EpochSpec:
        """Resolve weights and defaults as mosaic's ``StreamingDataset`` does, then freeze them.

        Args:
            samples_per_shard: Per stream, each shard's sample count.
            batch_size: Per-device batch size.
            num_nodes: Physical nodes of the *parallel* (replicated) world, for the C default.
            weights: Per stream weights (default: none).
            epoch_size: Samples per epoch (int or "100k"-style string).
            num_canonical_nodes: C; None applies :func:`default_num_canonical_nodes`.
            shuffle_block_size: None applies :func:`default_shuffle_block_size`.
            Others: as the ``StreamingDataset`` arguments of the same name.
        """
        per_stream = tuple(np.asarray(s, dtype=np.int64) for s in samples_per_shard)
        weights = list(weights) if weights is not None else [StreamWeights() for _ in per_stream]
        resolved, total = apply_weights(
            weights, [int(s.sum()) for s in per_stream], parse_epoch_size(epoch_size), shuffle_seed
        )
        ncn = (
            default_num_canonical_nodes(shuffle_algo, num_nodes)
            if num_canonical_nodes is None
            else num_canonical_nodes
        )
        block = default_shuffle_block_size(ncn) if shuffle_block_size is None else shuffle_block_size
        return cls(
            samples_per_shard=per_stream,
            choose_per_stream=tuple(w.choose for w in resolved),
            proportion_per_stream=tuple(w.proportion for w in resolved),
            epoch_size=total,
            batch_size=batch_size,
            num_canonical_nodes=ncn,
            shuffle=shuffle,
            shuffle_algo=shuffle_algo,
            shuffle_seed=shuffle_seed,
            shuffle_block_size=block,
            partition_algo=partition_algo,
            batching_method=batching_method,
            sampling_method=sampling_method,
            sampling_granularity=sampling_granularity,
            initial_physical_nodes=initial_physical_nodes,
            replication=replication,
        )

    @property
    def num_samples(self) -> int:
        """Unique samples over all streams."""
        return int(self.sample_offsets[-1])

    @property
    def num_shards(self) -> int:
        """Shards over all streams."""
        return len(self.sample_offsets) - 1

    def shard_of(self, sample_ids: np.ndarray) -> np.ndarray:
        """Global shard index of each sample id (vectorised searchsorted; 0-sample shards are skipped)."""
        return np.searchsorted(self.sample_offsets, np.asarray(sample_ids, np.int64), side="right") - 1

    def with_resume(
        self,
        *,
        num_canonical_nodes: int,
        shuffle_seed: int,
        initial_physical_nodes: int | None,
        shuffle_block_size: int | None,
    ) -> EpochSpec:
        """This spec with a checkpoint's order fields, which override the constructor's (as in mosaic).

        Args:
            num_canonical_nodes: From the checkpoint.
            shuffle_seed: From the checkpoint.
            initial_physical_nodes: From the checkpoint.
            shuffle_block_size: The dataset's *argument* (None re-applies the default for the checkpoint's C).

        Weights stay resolved with the constructor's seed, as mosaic resolves them at init.
        """
        from dataclasses import replace

        block = (
            default_shuffle_block_size(num_canonical_nodes)
            if shuffle_block_size is None
            else shuffle_block_size
        )
        return replace(
            self,
            num_canonical_nodes=num_canonical_nodes,
            shuffle_seed=shuffle_seed,
            initial_physical_nodes=initial_physical_nodes,
            shuffle_block_size=block,
        )
