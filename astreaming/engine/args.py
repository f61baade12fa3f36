"""Validation of ``StreamingDataset`` arguments: each bad value gets a ConfigError naming it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from astreaming._units import bytes_to_int, number_abbrev_to_int
from astreaming.engine.origin import origin_of
from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.format.hashing import hash_names
from astreaming.stream import Stream

__all__ = ["DatasetArgs", "StreamRegistry", "build_streams", "register_stream", "streams_registry"]

SAMPLING_METHODS = ("balanced", "fixed")
PARTITION_ALGOS = ("orig", "relaxed")
SHUFFLE_ALGOS = ("naive", "py1s", "py2s", "py1br", "py1e")
BATCHING_METHODS = ("random", "stratified", "per_stream", "device_per_stream")


class StreamRegistry(dict[str, type[Stream]]):
    """Stream classes by name; also spelled like mosaic's catalogue registry (``register``, ``get_all``)."""

    def register(self, name: str, func: type[Stream] | None = None) -> Any:
        """``streams_registry.register("mine", func=MyStream)``, or ``@streams_registry.register("mine")``."""
        if func is None:

            def decorate(cls: type[Stream]) -> type[Stream]:
                register_stream(name, cls)
                return cls

            return decorate
        register_stream(name, func)
        return func

    def get_all(self) -> dict[str, type[Stream]]:
        """A copy of the registry."""
        return dict(self)


#: Stream classes by name, for ``StreamingDataset(stream_name=..., stream_config=...)``.
streams_registry: StreamRegistry = StreamRegistry(stream=Stream)


def register_stream(name: str, cls: type[Stream]) -> None:
    """Make a ``Stream`` subclass available as ``StreamingDataset(stream_name=name)``.

    Register it at import time of a module the DataLoader workers also import (the dataset's module):
    the registry lives in each process.

    Raises:
        ConfigError: ``cls`` is not a ``Stream`` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, Stream)):
        raise ConfigError(f"register_stream: {cls!r} is not a Stream subclass")
    streams_registry[name] = cls


@dataclass(frozen=True)
class DatasetArgs:
    """The order- and download-relevant arguments of a dataset, parsed and checked."""

    download_retry: int
    download_timeout: float
    validate_hash: str | None
    keep_zip: bool
    epoch_size: int | None
    predownload: int
    #: Whether ``predownload`` is the default (nobody chose the look-ahead: it may stretch to keep the
    #: link busy).
    predownload_default: bool
    cache_limit: int | None
    sampling_method: str
    sampling_granularity: int
    partition_algo: str
    num_canonical_nodes: int | None
    batch_size: int | None
    shuffle: bool
    shuffle_algo: str
    shuffle_seed: int
    shuffle_block_size: int | None
    batching_method: str
    allow_unsafe_types: bool
    replication: int | None
    max_concurrent_downloads: int


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise UnknownOptionError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def _positive(name: str, value: Any, *, allow_none: bool = True, minimum: int = 1) -> Any:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"{name} must be given")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_args(
    *,
    download_retry: int,
    download_timeout: float,
    validate_hash: str | None,
    keep_zip: bool,
    epoch_size: int | str | None,
    predownload: int | None,
    cache_limit: int | str | None,
    sampling_method: str,
    sampling_granularity: int,
    partition_algo: str,
    num_canonical_nodes: int | None,
    batch_size: int | None,
    shuffle: bool,
    shuffle_algo: str,
    shuffle_seed: int,
    shuffle_block_size: int | None,
    batching_method: str,
    allow_unsafe_types: bool,
    replication: int | None,
    max_concurrent_downloads: int,
) -> DatasetArgs:
    """Check every argument; the error names the first bad one."""
    if download_retry is None or download_retry < 0:
        raise ConfigError(f"download_retry must be >= 0, got {download_retry!r}")
    if not download_timeout or download_timeout <= 0:
        raise ConfigError(f"download_timeout must be > 0 seconds, got {download_timeout!r}")
    if epoch_size is not None:
        epoch_size = number_abbrev_to_int(epoch_size, name="epoch_size")
        if epoch_size < 0:
            raise ConfigError(f"epoch_size must be >= 0, got {epoch_size!r}")
    if cache_limit is not None:
        cache_limit = bytes_to_int(cache_limit, name="cache_limit")
    batch_size = _positive("batch_size", batch_size)
    predownload_default = predownload is None
    if predownload is None:
        predownload = 8 * batch_size if batch_size is not None else 64
    predownload = _positive("predownload", predownload, minimum=0)
    if validate_hash is not None and validate_hash not in hash_names():
        raise UnknownOptionError(
            f"validate_hash={validate_hash!r} is not a supported hash ({', '.join(hash_names())})"
        )
    if shuffle_seed is None or shuffle_seed < 0:
        raise ConfigError(f"shuffle_seed must be >= 0, got {shuffle_seed!r}")
    return DatasetArgs(
        download_retry=int(download_retry),
        download_timeout=float(download_timeout),
        validate_hash=validate_hash,
        keep_zip=bool(keep_zip),
        epoch_size=epoch_size,
        predownload=predownload,
        predownload_default=predownload_default,
        cache_limit=cache_limit,
        sampling_method=_choice("sampling_method", sampling_method, SAMPLING_METHODS),
        sampling_granularity=_positive("sampling_granularity", sampling_granularity, allow_none=False),
        partition_algo=_choice("partition_algo", partition_algo, PARTITION_ALGOS),
        num_canonical_nodes=_positive("num_canonical_nodes", num_canonical_nodes),
        batch_size=batch_size,
        shuffle=bool(shuffle),
        shuffle_algo=_choice("shuffle_algo", shuffle_algo, SHUFFLE_ALGOS),
        shuffle_seed=int(shuffle_seed),
        shuffle_block_size=_positive("shuffle_block_size", shuffle_block_size),
        batching_method=_choice("batching_method", batching_method, BATCHING_METHODS),
        allow_unsafe_types=bool(allow_unsafe_types),
        replication=_positive("replication", replication),
        max_concurrent_downloads=_positive(
            "max_concurrent_downloads", max_concurrent_downloads, allow_none=False
        ),
    )


def _check_locals(streams: Sequence[Stream]) -> None:
    """Refuse two streams that read different remotes into one local directory (mosaic refused any
    reused directory): their files have the same names (``index.json``, ``shard.00000.mds``), so one
    stream would overwrite the other's or read them as its own, silently when the sizes agree. The same
    remote twice (a stream listed twice to weight it) shares its files safely."""
    seen: dict[str, tuple[int, str | None]] = {}
    for index, stream in enumerate(streams):
        directory = os.path.realpath(stream.local_root)
        remote = None if stream.remote_root is None else origin_of(stream.remote_root)
        if directory not in seen:
            seen[directory] = (index, remote)
            continue
        first, other = seen[directory]
        if other != remote:
            raise ConfigError(
                f"streams {first} and {index} share the local directory {stream.local_root!r} but read "
                f"different remotes ({other or 'none'} and {remote or 'none'}): their shards would "
                "overwrite each other; "
                "give each stream its own `local`"
            )


def build_streams(
    streams: Sequence[Stream] | None,
    remote: str | None,
    local: str | None,
    split: str | None,
    stream_name: str,
    stream_config: dict[str, Any] | None,
) -> list[Stream]:
    """The dataset's streams: the given ones, or one built from ``remote``/``local``/``split``."""
    if streams is not None:
        if remote is not None or local is not None:
            raise ConfigError("give either `streams` or `remote`/`local`, not both")
        if not streams:
            raise ConfigError("`streams` must not be empty")
        for stream in streams:
            if not isinstance(stream, Stream):
                raise ConfigError(f"`streams` must hold Stream objects, got {type(stream).__name__}")
        if split is not None:
            # Like mosaic's apply_default: a stream without its own split takes the dataset's.
            for stream in streams:
                if stream.split is None:
                    stream.split = split
        _check_locals(streams)
        return list(streams)
    if remote is None and local is None:
        raise ConfigError("give `streams`, or `remote` and/or `local`")
    cls = streams_registry.get(stream_name)
    if cls is None:
        raise UnknownOptionError(
            f"stream_name={stream_name!r} is not registered ({sorted(streams_registry)})"
        )
    return [cls(remote=remote, local=local, split=split, **(stream_config or {}))]
