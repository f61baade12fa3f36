"""``StreamingDataset``: the public front end joining order, fetch, cache, storage and format."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import os
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from astreaming.cache.budget import check_cache_limit
from astreaming.engine.args import build_streams, parse_args
from astreaming.engine.indexes import load_stream_index
from astreaming.engine.iterate import aiter_plan, iter_plan
from astreaming.engine.ordering import build_spec, plan_store, worker_plan
from astreaming.engine.ranges import RangeSampler
from astreaming.engine.readers import ReaderCache
from astreaming.engine.runtime import Runtime, SyncRuntime, retry_policy
from astreaming.engine.shards import ShardTable, StreamShards
from astreaming.epochs import EpochControl
from astreaming.errors import ConfigError
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.spec import EpochSpec
from astreaming.order.weights import apply_weights
from astreaming.order.world import World
from astreaming.storage.registry import backend_for
from astreaming.storage.retry import RetryStats
from astreaming.stream import Stream

try:  # torch is optional at runtime: `async for` and random access work without it.
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # pragma: no cover - torch is installed in the test environments
    _Base = object  # type: ignore[assignment,misc]

__all__ = ["StreamingDataset"]


def _noting(plan: Iterable[np.ndarray], into: collections.deque[int]) -> Iterator[np.ndarray]:
    """The plan's chunks, each one's ids appended to ``into`` as the walk takes it."""
    for chunk in plan:
        into.extend(chunk.tolist())
        yield chunk


T = TypeVar("T")


class StreamingDataset(_Base):  # type: ignore[misc,valid-type,type-arg]
    """A dataset streamed from one or more remote or local MDS/JSONL/CSV directories.

    Accepts every argument of mosaicml-streaming 0.13.0's ``StreamingDataset`` with the same meaning
    and default (see the README's migration notes for the defects fixed), plus keyword-only
    ``max_concurrent_downloads``.

    Iterate it with ``for sample in ds`` (also inside DataLoader workers), ``async for sample in ds``
    (on the running loop), or index it with ``ds[i]``, ``ds[[i, j]]``, ``ds[a:b]``.

    Args:
        streams: The data sources; exclusive with ``remote``/``local``.
        remote: URL or path of the single stream's dataset.
        local: Cache directory of the single stream (default: a directory derived from ``remote``).
        split: Sub-directory of ``remote`` and ``local``.
        download_retry: Retries of a failed download after the first attempt.
        download_timeout: Seconds each download attempt may take, on every backend.
        validate_hash: Hash algorithm verifying downloaded files against the index.
        keep_zip: Keep compressed files after decompression.
        epoch_size: Samples per epoch (int, or a string like ``"100k"``).
        predownload: Look-ahead of downloads in samples (default ``8 * batch_size``).
        cache_limit: Bytes of shards kept in the cache (int or ``"10gb"``).
        sampling_method: ``"balanced"`` or ``"fixed"``.
        sampling_granularity: Samples per pick when sub-sampling a stream.
        partition_algo: ``"orig"`` or ``"relaxed"``.
        num_canonical_nodes: Canonical nodes of the sample order (default depends on ``shuffle_algo``).
        batch_size: Per-device batch size; required to iterate.
        shuffle: Shuffle samples.
        shuffle_algo: ``"naive"``, ``"py1s"``, ``"py2s"``, ``"py1br"`` or ``"py1e"``.
        shuffle_seed: Seed of every random choice.
        shuffle_block_size: Block size of ``py1br``/``py1e``.
        batching_method: ``"random"``, ``"stratified"``, ``"per_stream"`` or ``"device_per_stream"``.
        allow_unsafe_types: Allow ``pkl`` columns.
        replication: Consecutive ranks that receive identical samples.
        stream_name: Registered Stream class used for ``remote``/``local``.
        stream_config: Extra keyword arguments for that Stream class.
        max_concurrent_downloads: Shard downloads in flight per process.

    Raises:
        ConfigError: an invalid argument (named in the message).
        FormatError: a malformed index.
        StorageError: an index could not be read.
    """

    def __init__(
        self,
        *,
        streams: Sequence[Stream] | None = None,
        remote: str | None = None,
        local: str | None = None,
        split: str | None = None,
        download_retry: int = 2,
        download_timeout: float = 60,
        validate_hash: str | None = None,
        keep_zip: bool = False,
        epoch_size: int | str | None = None,
        predownload: int | None = None,
        cache_limit: int | str | None = None,
        sampling_method: str = "balanced",
        sampling_granularity: int = 1,
        partition_algo: str = "relaxed",
        num_canonical_nodes: int | None = None,
        batch_size: int | None = None,
        shuffle: bool = False,
        shuffle_algo: str = "py1e",
        shuffle_seed: int = 9176,
        shuffle_block_size: int | None = None,
        batching_method: str = "random",
        allow_unsafe_types: bool = False,
        replication: int | None = None,
        stream_name: str = "stream",
        stream_config: dict[str, Any] | None = None,
        max_concurrent_downloads: int = 8,
    ) -> None:
        self.args = parse_args(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.streams = build_streams(streams, remote, local, split, stream_name, stream_config)
        for name in (
            "epoch_size",
            "predownload",
            "cache_limit",
            "sampling_method",
            "sampling_granularity",
            "partition_algo",
            "num_canonical_nodes",
            "batch_size",
            "shuffle",
            "shuffle_algo",
            "shuffle_seed",
            "shuffle_block_size",
            "batching_method",
            "allow_unsafe_types",
            "replication",
        ):
            setattr(self, name, getattr(self.args, name))  # mosaic exposes these as attributes
        self._table = _run_blocking(self._load_table())
        self._table.check_columns(allow_unsafe_types=self.args.allow_unsafe_types)
        samples = self._table.samples_per_stream.tolist()
        weights, total = apply_weights(
            [s.weights for s in self.streams], samples, self.args.epoch_size, self.args.shuffle_seed
        )
        for stream, weighted in zip(self.streams, weights, strict=True):
            stream.choose, stream.repeat, stream.proportion = (
                weighted.choose,
                weighted.repeat,
                weighted.proportion,
            )
        self._weights = weights
        self.epoch_size = total
        largest = max((self._table.max_bytes(s) for s in range(self._table.num_shards)), default=0)
        check_cache_limit(
            self.args.cache_limit,
            index_bytes=sum(s.index_bytes for s in self._table.streams),
            largest_shard_bytes=largest,
        )
        self._control = EpochControl()
        self._sync: SyncRuntime | None = None
        self._readers: ReaderCache | None = None
        self._ranges = RangeSampler(self._table, allow_unsafe_types=self.args.allow_unsafe_types)

    # -- construction --------------------------------------------------------------------------------

    async def _load_table(self) -> ShardTable:
        stats = RetryStats()
        loaded: list[StreamShards] = []
        for stream in self.streams:
            options = stream.download_options(
                download_retry=self.args.download_retry,
                download_timeout=self.args.download_timeout,
                validate_hash=self.args.validate_hash,
                keep_zip=self.args.keep_zip,
            )
            policy = retry_policy(options.download_retry, options.download_timeout)
            root = stream.remote_root
            if root is None:
                entries, size = await load_stream_index(stream, None, policy, stats)
            else:
                async with backend_for(root, timeout=options.download_timeout) as backend:
                    entries, size = await load_stream_index(stream, backend, policy, stats)
            loaded.append(StreamShards(stream, entries, options, size))
        return ShardTable(loaded)

    def __getstate__(self) -> dict[str, Any]:
        # Live resources stay in the process that made them; a worker builds its own on first use.
        state = self.__dict__.copy()
        state["_sync"] = None
        state["_readers"] = None
        state["_ranges"] = RangeSampler(self._table, allow_unsafe_types=self.args.allow_unsafe_types)
        return state

    # -- sizes (mosaic's derived attributes) ---------------------------------------------------------

    @property
    def num_samples(self) -> int:
        """Unique samples over all streams."""
        return self._table.num_samples

    @property
    def size(self) -> int:
        """Same as :attr:`num_samples` (mosaic's ``Array.size``)."""
        return self._table.num_samples

    def __len__(self) -> int:
        """Samples per rank per epoch: ``ceil(epoch_size / ranks)`` (padding and repeats ignored)."""
        world = World.detect().replicate(self.args.replication)
        return math.ceil(self.epoch_size / world.num_ranks)

    @property
    def num_shards(self) -> int:
        """Shards over all streams."""
        return self._table.num_shards

    @property
    def shards(self) -> list[Any]:
        """The index entry of every shard (stream order, then index order)."""
        return list(self._table.entries)

    @property
    def samples_per_shard(self) -> np.ndarray:
        """Samples in each shard."""
        return self._table.samples_per_shard

    @property
    def sample_offset_per_shard(self) -> np.ndarray:
        """Global id of each shard's first sample."""
        return self._table.sample_offset_per_shard

    @property
    def stream_per_shard(self) -> np.ndarray:
        """Stream id of each shard."""
        return self._table.stream_per_shard

    @property
    def shards_per_stream(self) -> np.ndarray:
        """Shards in each stream."""
        return self._table.shards_per_stream

    @property
    def shard_offset_per_stream(self) -> np.ndarray:
        """Global id of each stream's first shard."""
        return self._table.shard_offset_per_stream

    @property
    def samples_per_stream(self) -> np.ndarray:
        """Unique samples in each stream."""
        return self._table.samples_per_stream

    @property
    def sample_offset_per_stream(self) -> np.ndarray:
        """Global id of each stream's first sample."""
        return self._table.sample_offset_per_stream

    @property
    def cache_usage(self) -> int:
        """Bytes of shards this process's cache budget accounts for (0 without ``cache_limit``)."""
        if self._sync is None or self._sync.pid != os.getpid() or self._sync.runtime.budget is None:
            return 0
        return self._sync.runtime.budget.usage

    @property
    def next_epoch(self) -> int:
        """The epoch the next iteration will run (shared with DataLoader workers)."""
        return self._control.upcoming()

    # -- epochs and checkpoints ----------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Run ``epoch`` in every following iteration, in every worker (torch convention)."""
        if epoch < 0:
            raise ConfigError(f"set_epoch: epoch must be >= 0, got {epoch}")
        self._control.set_epoch(epoch)

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """A checkpoint of the current epoch after ``num_samples`` samples (mosaic's keys)."""
        current = self._control.current()
        world = World.detect()
        spec = self._order_spec(current.resume, world)
        initial = spec.initial_physical_nodes
        if initial is None:
            initial = world.replicate(self.args.replication).num_nodes
        sample_in_epoch = num_samples if from_beginning else current.sample_in_epoch + num_samples
        return {
            "epoch": current.epoch,
            "sample_in_epoch": sample_in_epoch,
            "num_canonical_nodes": spec.num_canonical_nodes,
            "shuffle_seed": spec.shuffle_seed,
            "initial_physical_nodes": initial,
        }

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume from a checkpoint at the next iteration (never ignored as stale)."""
        missing = {"epoch", "sample_in_epoch"} - set(obj)
        if missing:
            raise ConfigError(f"load_state_dict: checkpoint lacks {sorted(missing)}")
        self._control.load(obj)

    def _order_spec(self, resume: dict[str, Any] | None, world: World) -> EpochSpec:
        return build_spec(self.args, self._table, [s.weights for s in self.streams], world, resume)

    # -- iteration -----------------------------------------------------------------------------------

    def _plan(self) -> tuple[int, World, LazyWorkerPlan]:
        if self.args.batch_size is None:
            raise ConfigError("batch_size must be given to iterate a StreamingDataset")
        world = World.detect()
        start = self._control.start()
        spec = self._order_spec(start.resume, world)
        # Computed as consumed; what the node's processes share is computed once, in the cache directory.
        store = plan_store()
        return start.epoch, world, worker_plan(spec, world, start.epoch, start.sample_in_epoch, store)

    def _complete(self, epoch: int, world: World) -> None:
        self._control.complete(epoch, world.worker_of_rank, world.workers_per_rank)

    def _new_runtime(self) -> Runtime:
        return Runtime(
            self._table,
            max_in_flight=self.args.max_concurrent_downloads,
            predownload=self.args.predownload,
            cache_limit=self.args.cache_limit,
        )

    def _sync_parts(self) -> tuple[SyncRuntime, ReaderCache]:
        if self._sync is None or self._sync.pid != os.getpid():
            self._sync = SyncRuntime(self._new_runtime())
            self._readers = ReaderCache(self._table, allow_unsafe_types=self.args.allow_unsafe_types)
        assert self._readers is not None
        return self._sync, self._readers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, world, plan = self._plan()
        runtime, readers = self._sync_parts()
        if type(self).__getitem__ is StreamingDataset.__getitem__:
            yield from iter_plan(self._table, readers, runtime, plan)
        else:
            # mosaic yields ``self[sample_id]``, so a subclass that transforms samples in __getitem__
            # (tokenising, augmenting) sees iteration too. The plan walk still drives prefetching and
            # guarantees the shard is ready (and pinned) when the override reads it.
            pending: collections.deque[int] = collections.deque()  # ids of the chunks the walk took
            for _ in iter_plan(self._table, readers, runtime, _noting(plan, pending)):
                yield self[pending.popleft()]
        self._complete(epoch, world)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        epoch, world, plan = self._plan()
        readers = ReaderCache(self._table, allow_unsafe_types=self.args.allow_unsafe_types)
        try:
            async with self._new_runtime() as runtime:
                async for sample in aiter_plan(self._table, readers, runtime, plan):
                    yield sample
        finally:
            readers.close()
        self._complete(epoch, world)

    # -- random access -------------------------------------------------------------------------------

    def get_item(self, sample_id: int) -> dict[str, Any]:
        """Sample ``sample_id`` (0 ≤ id < size), downloading its shard if needed."""
        shard, index = self._table.locate(sample_id)
        runtime, readers = self._sync_parts()
        core = runtime.runtime
        budget = core.budget
        while core.evicted:  # close readers of shards evicted since the last read
            readers.drop(core.evicted.popleft())
        if (
            not core.scheduler.is_ready(shard)
            and self._ranges.eligible(shard)
            and not self._table.is_local(shard)
        ):
            return runtime.loop_thread.call(self._ranges.sample(core, shard, index))
        if budget is None or not core.evictable[shard]:
            if not core.scheduler.is_ready(shard) and not self._table.is_local(shard):
                runtime.waiter.wait_ready(shard, -math.inf)  # jumps the queue
            return readers.get(shard)[index]
        while True:
            runtime.waiter.wait_ready(shard, -math.inf)
            if budget.pin(shard):  # resident, and stays so while we read it
                try:
                    return readers.get(shard)[index]
                finally:
                    budget.unpin(shard)
            budget.unpin(shard)
            # Evicted in between. The scheduler may still count it as ready (an eviction can land
            # between a fetch's commit and the scheduler marking it ready): make it forget the shard,
            # on the loop and before the next wait is submitted, or the wait would return at once forever.
            runtime.loop_thread.call_soon(core.scheduler.forget, shard)

    def __getitem__(self, at: Any) -> Any:
        """``ds[i]`` (negative wraps), ``ds[a:b:c]``, ``ds[[i, j]]`` or an integer ndarray."""
        size = self.size
        if isinstance(at, (int, np.integer)):
            i = int(at)
            if not -size <= i < size:
                raise IndexError(f"sample index {i} out of range for a dataset of {size} samples")
            return self.get_item(i % size)
        if isinstance(at, slice):
            return [self.get_item(i) for i in range(*at.indices(size))]
        if isinstance(at, (list, tuple, np.ndarray)):
            return [self[i] for i in (at.tolist() if isinstance(at, np.ndarray) else at)]
        raise TypeError(f"dataset indices must be int, slice, list or ndarray, not {type(at).__name__}")

    # -- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this process's downloads and close its storage clients and open shards.

        Optional: collection and interpreter exit do the same. The dataset stays usable; the next
        iteration or ``ds[i]`` starts afresh.
        """
        sync, readers = self._sync, self._readers
        self._sync, self._readers = None, None
        if readers is not None:
            readers.close()
        if sync is not None and sync.pid == os.getpid():
            sync.close()

    def __enter__(self) -> StreamingDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statistics ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of this process: downloads, cache hits, retries, consumer wait, in flight."""
        if self._sync is None or self._sync.pid != os.getpid():
            return {
                "bytes_downloaded": 0,
                "shards_downloaded": 0,
                "cache_hits": 0,
                "retries": 0,
                "wait_seconds": 0.0,
                "in_flight": 0,
            }
        runtime = self._sync.runtime
        fetch = runtime.fetcher.counters
        sched = runtime.scheduler.statistics()
        return {
            "bytes_downloaded": fetch.bytes_downloaded,
            "shards_downloaded": fetch.shards_fetched,
            "cache_hits": fetch.shards_already_local,
            "retries": runtime.retry_stats.retries,
            "wait_seconds": sched.consumer_wait_seconds,
            "in_flight": sched.in_flight,
        }


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop.

    A short-lived thread with its own loop: nothing (loop, thread, session) outlives the call, so the
    dataset stays safe to fork and pickle afterwards.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="astreaming-init") as pool:
        return pool.submit(asyncio.run, coro).result()
