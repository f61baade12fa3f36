"""``StreamingDataset``: the public front end joining order, fetch, cache, storage and format."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

import numpy as np

from astreaming import carried
from astreaming.array import Array
from astreaming.dataset_async import AsyncResourceAPI, aiter_in_thread, on_asyncio
from astreaming.dataset_mosaic import ShardStreamAPI
from astreaming.dataset_resume import ResumableIterator, fetched_by_torch, in_dataloader_worker
from astreaming.engine.access import read_sample
from astreaming.engine.args import build_streams, parse_args
from astreaming.engine.hooks import HookedReaders, active_reader
from astreaming.engine.indexes import check_index_unchanged, load_stream_index, read_local_index
from astreaming.engine.iterate import aiter_plan, iter_plan
from astreaming.engine.kept import KeptBackends
from astreaming.engine.ordering import build_spec, plan_store, worker_plan
from astreaming.engine.ranges import RangeSampler
from astreaming.engine.readers import ReaderCache
from astreaming.engine.runtime import Runtime, SyncRuntime, retry_policy
from astreaming.engine.shards import ShardTable, StreamShards
from astreaming.engine.stats import DatasetStatistics, StatsTally, runtime_statistics
from astreaming.epochs import EpochControl
from astreaming.errors import ConfigError
from astreaming.fetch.blocking import run_blocking
from astreaming.fetch.loop_thread import get_loop_thread
from astreaming.order import hints
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.spec import EpochSpec
from astreaming.order.weights import apply_weights
from astreaming.order.world import World
from astreaming.storage.base import Backend
from astreaming.storage.retry import RetryStats
from astreaming.stream import DownloadOptions, Stream

try:  # torch is optional at runtime: `async for` and random access work without it.
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # pragma: no cover - torch is installed in the test environments
    _Base = object  # type: ignore[assignment,misc]

__all__ = ["StreamingDataset", "Walker"]

#: Walks a worker's plan over the readers (``iter_plan``, or a batched walk): what it yields is yielded.
#: Called as ``walker(table, readers, runtime, plan, ranges=RangeSampler | None)``.
Walker = Callable[..., Iterator[Any]]


#: Shard readers kept open per process under a cache_limit.
_READERS_UNDER_LIMIT = 128


class StreamingDataset(AsyncResourceAPI, ShardStreamAPI, Array, _Base):  # type: ignore[misc,valid-type,type-arg]
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
        self.args = parse_args(
            download_retry=download_retry,
            download_timeout=download_timeout,
            validate_hash=validate_hash,
            keep_zip=keep_zip,
            epoch_size=epoch_size,
            predownload=predownload,
            cache_limit=cache_limit,
            sampling_method=sampling_method,
            sampling_granularity=sampling_granularity,
            partition_algo=partition_algo,
            num_canonical_nodes=num_canonical_nodes,
            batch_size=batch_size,
            shuffle=shuffle,
            shuffle_algo=shuffle_algo,
            shuffle_seed=shuffle_seed,
            shuffle_block_size=shuffle_block_size,
            batching_method=batching_method,
            allow_unsafe_types=allow_unsafe_types,
            replication=replication,
            max_concurrent_downloads=max_concurrent_downloads,
        )
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
        self._kept: KeptBackends | None = None
        self._table = self._build_table()
        try:
            self._settle_table()
        except BaseException:
            if self._kept is not None:  # a bad index or argument: nothing stays open behind the error
                self._kept.close()
            raise
        self._control = EpochControl()
        self._hint_cache: tuple[tuple[str, ...], str | None] | None = None  # see _plan_hint
        self._tally = StatsTally(self._control.path)
        self._sync: SyncRuntime | None = None
        self._readers: ReaderCache | None = None
        self._ranges = RangeSampler(self._table, allow_unsafe_types=self.args.allow_unsafe_types)

    # -- construction --------------------------------------------------------------------------------

    def _settle_table(self) -> None:
        """Check the loaded table against the arguments and derive the epoch's weights and size."""
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
        index_bytes = sum(s.index_bytes for s in self._table.streams)
        if self.args.cache_limit is not None:
            # Imported here: the node ledger (sqlite3 and its library, ~1 MB resident) serves only a
            # cache_limit, and a process without one should not carry it.
            from astreaming.cache.budget import check_cache_limit
            from astreaming.engine.ledgerkeys import check_node_budget

            check_cache_limit(self.args.cache_limit, index_bytes=index_bytes, largest_shard_bytes=largest)
            # Each rank on this node reads at once (DataLoader workers are only known when iterating,
            # where the check is repeated with them).
            check_node_budget(
                self.args.cache_limit,
                fixed=index_bytes,
                largest_raw=max((self._table.raw_bytes(s) for s in range(self.num_shards)), default=0),
                largest_footprint=largest,
                readers=World.detect().ranks_per_node,
            )

    def _build_table(self) -> ShardTable:
        """Read every stream's index; keep the backends that did it open for the iterations to come.

        Read on the process's loop thread, where iterating and ``ds[i]`` fetch: the backends stay open
        in :attr:`_kept`, so the shard fetches share their storage clients instead of building their
        own. Without a remote the indexes are read right here; called on the loop thread itself, a
        short-lived loop reads them; nothing outlives either.
        """
        if all(stream.remote_root is None for stream in self.streams):
            # Nothing to await: read here, without run_blocking's thread and event loop (they took
            # 2 of the 5 ms a cached 20-shard dataset's construction took).
            return ShardTable([self._local_shards(stream) for stream in self.streams])
        loop_thread = get_loop_thread()
        if loop_thread.in_loop_thread():
            return run_blocking(self._load_table(None))
        kept = KeptBackends(loop_thread)
        try:
            table = loop_thread.call(self._load_table(kept.backends))
        except BaseException:
            kept.close()
            raise
        self._kept = kept
        return table

    def _options(self, stream: Stream) -> DownloadOptions:
        return stream.download_options(
            download_retry=self.args.download_retry,
            download_timeout=self.args.download_timeout,
            validate_hash=self.args.validate_hash,
            keep_zip=self.args.keep_zip,
        )

    def _local_shards(self, stream: Stream) -> StreamShards:
        entries, size, digest = read_local_index(stream)
        return StreamShards(stream, entries, self._options(stream), size, digest)

    async def _load_table(self, keep: list[Backend] | None) -> ShardTable:
        """The shard table; with ``keep``, the backends opened are left open in it (else closed)."""
        stats = RetryStats()
        loaded: list[StreamShards] = []
        for stream in self.streams:
            options = self._options(stream)
            policy = retry_policy(options.download_retry, options.download_timeout)
            if stream.remote_root is None:
                entries, size, digest = await load_stream_index(stream, None, policy, stats)
            elif keep is None:
                async with stream.open_backend(options.download_timeout) as backend:
                    entries, size, digest = await load_stream_index(stream, backend, policy, stats)
            else:
                backend = stream.open_backend(options.download_timeout)
                keep.append(backend)  # before it is opened: closing the kept ones closes it too
                await backend.__aenter__()
                entries, size, digest = await load_stream_index(stream, backend, policy, stats)
            loaded.append(StreamShards(stream, entries, options, size, digest))
        return ShardTable(loaded)

    def __getstate__(self) -> dict[str, Any]:
        # Live resources stay in the process that made them; a worker builds its own on first use.
        state = self.__dict__.copy()
        state["_sync"] = None
        state["_readers"] = None
        state["_kept"] = None
        state["_hint_cache"] = None  # a checkpoint's string (MBs at 1B samples) stays here
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
        """Bytes counted against ``cache_limit`` on this node now: every shard and index in the
        dataset's cache directories (cached by any process or job), the ledger's own files, and the
        data of streams without a remote. 0 without ``cache_limit``."""
        if self._sync is None or self._sync.pid != os.getpid() or self._sync.runtime.budget is None:
            return 0
        return self._sync.runtime.budget.usage()

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

    def state_dict(self, num_samples: int | None = None, from_beginning: bool = False) -> dict[str, Any]:
        """A checkpoint of the current epoch after ``num_samples`` samples (mosaic's keys).

        With ``num_samples`` given (mosaic's and Composer's call, and ``StreamingDataLoader.state_dict()``'s)
        the checkpoint also carries, under ``astreaming_plan``, the shuffle draws of its epoch that this
        node computed (a string; see :mod:`astreaming.order.hints`): a resume on new machines then skips
        their replay. Without arguments (torchdata's ``StatefulDataLoader`` calls it in each worker at
        every snapshot): only mosaic's keys, the current epoch and the point its iteration resumed from;
        the workers' iterators hold their progress.
        """
        current = self._control.current()
        world = World.detect()
        spec = self._order_spec(current.resume, world)
        initial = spec.initial_physical_nodes
        if initial is None:
            initial = world.replicate(self.args.replication).num_nodes
        done = 0 if num_samples is None else num_samples
        sample_in_epoch = done if from_beginning else current.sample_in_epoch + done
        state: dict[str, Any] = {
            "epoch": current.epoch,
            "sample_in_epoch": sample_in_epoch,
            "num_canonical_nodes": spec.num_canonical_nodes,
            "shuffle_seed": spec.shuffle_seed,
            "initial_physical_nodes": initial,
        }
        if num_samples is not None and self.args.batch_size is not None and spec.shuffle:
            plan = self._plan_hint(spec, world.replicate(spec.replication), current.epoch, sample_in_epoch)
            if plan is not None:
                state[hints.KEY] = plan
        return state

    def _plan_hint(self, spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int) -> str | None:
        found = hints.collect_hints(spec, world, epoch, sample_in_epoch, plan_store())
        keys = tuple(sorted(found))
        cached = self._hint_cache
        if cached is None or cached[0] != keys:  # the same artefacts encode the same: once per epoch
            cached = self._hint_cache = (keys, hints.encode_hints(found))
        return cached[1]

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume from a checkpoint at the next iteration (never ignored as stale).

        The shuffle draws a checkpoint carries (``astreaming_plan``) go to the node's plan store, where
        they count as computed; a damaged one is ignored with a warning (the resume replays them).
        """
        missing = {"epoch", "sample_in_epoch"} - set(obj)
        if missing:
            raise ConfigError(f"load_state_dict: checkpoint lacks {sorted(missing)}")
        self._control.load({k: v for k, v in obj.items() if k != hints.KEY})  # the control file stays small
        if obj.get(hints.KEY) is not None:
            try:
                found = hints.decode_hints(obj[hints.KEY])
            except hints.PlanHintError as exc:
                warnings.warn(
                    f"{exc}: the resumed epoch's shuffle is computed again", UserWarning, stacklevel=2
                )
            else:
                hints.offer_hints(plan_store(), found)

    def _order_spec(self, resume: dict[str, Any] | None, world: World) -> EpochSpec:
        return build_spec(self.args, self._table, [s.weights for s in self.streams], world, resume)

    # -- iteration -----------------------------------------------------------------------------------

    def _plan(self, world: World | None = None) -> tuple[int, World, LazyWorkerPlan]:
        # ``world``: the worker whose plan to walk (default: the calling process's, World.detect()).
        if self.args.batch_size is None:
            raise ConfigError("batch_size must be given to iterate a StreamingDataset")
        world = World.detect() if world is None else world
        start = self._control.start()
        spec = self._order_spec(start.resume, world)
        # Computed as consumed; what the node's processes share is computed once, in the cache directory.
        store = plan_store()
        return start.epoch, world, worker_plan(spec, world, start.epoch, start.sample_in_epoch, store)

    @staticmethod
    def _recheck_index(epoch: int, world: World) -> bool:
        # The first epoch walks what construction just read; each later one (and a resumed one) reads
        # the index again where the rank's first batch is read: its first DataLoader worker, or the
        # rank's own process (in-process, and StreamingDataLoader's lead batch).
        return epoch > 0 and world.worker_of_rank == 0

    async def _check_indexes(self, runtime: Runtime) -> None:
        """Every remote stream's index is still the one this dataset was built from (else ObjectChanged)."""
        for stream_id, shards in enumerate(self._table.streams):
            root = shards.stream.remote_root
            if root is None:
                continue
            backend, policy = runtime.backend(stream_id)
            samples = int(self._table.samples_per_stream[stream_id])
            await check_index_unchanged(
                root,
                backend,
                policy,
                runtime.retry_stats,
                shards.index_digest,
                samples,
                self._table.pins[stream_id],
            )

    def _complete(self, epoch: int, world: World) -> None:
        self._control.complete(epoch, world.worker_of_rank, world.workers_per_rank)

    def _new_runtime(self) -> Runtime:
        world = World.detect()
        slot = f"{self._control.path.stem}-w{world.worker_of_rank}" if in_dataloader_worker() else None
        return Runtime(
            self._table,
            max_in_flight=self.args.max_concurrent_downloads,
            predownload=self.args.predownload,
            stretch=self.args.predownload_default,
            cache_limit=self.args.cache_limit,
            readers=world.workers_per_node,
            # A DataLoader worker's successor (the next epoch's worker of the same index, started by the
            # same parent) is known to the ledger by this slot: it finds the hints this one leaves.
            hint_slot=slot,
        )

    def _new_readers(self) -> ReaderCache:
        # Under a cache_limit, a mapped reader of a shard evicted by another process keeps that copy's
        # disk space until it is closed: keep fewer open (the walk also prunes replaced ones).
        max_open = 256 if self.args.cache_limit is None else _READERS_UNDER_LIMIT
        return ReaderCache(self._table, allow_unsafe_types=self.args.allow_unsafe_types, max_open=max_open)

    def _sync_parts(self) -> tuple[SyncRuntime, ReaderCache]:
        if self._sync is None or self._sync.pid != os.getpid():
            self._sync = SyncRuntime(self._new_runtime())
            self._readers = self._new_readers()
        assert self._readers is not None
        return self._sync, self._readers

    def _has_hooks(self) -> bool:
        # mosaic yields ``self[sample_id]``, so a subclass overriding ``get_item`` or ``__getitem__``
        # (tokenising, augmenting) sees iteration too; the walk then calls the hook instead of decoding.
        cls = type(self)
        return cls.get_item is not StreamingDataset.get_item or cls.__getitem__ is not Array.__getitem__

    def _hooked(self, readers: ReaderCache) -> ReaderCache:
        return HookedReaders(readers, self, self.__getitem__) if self._has_hooks() else readers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Iterated by a DataLoader (in a worker, or by the fetcher of one without workers) the iterator
        # also reports and restores its position (torchdata's StatefulDataLoader); elsewhere the bare
        # walk, with no Python code per sample.
        if not fetched_by_torch():
            return self._walk(0)
        if carried.carry_in_this_worker:  # a StreamingDataLoader worker whose items are these samples
            from torch.utils.data import get_worker_info

            info = get_worker_info()
            worker = info.id if info is not None else 0
            # The carrier never reaches user code: the loader's main process raises what it holds.
            return ResumableIterator(
                lambda skip: cast(Iterator[dict[str, Any]], carried.carry_errors(self._walk(skip), worker))
            )
        return ResumableIterator(self._walk)

    def _walk(self, skip: int, walker: Walker = iter_plan, world: World | None = None) -> Iterator[Any]:
        # ``walker``: iter_plan yields samples; StreamingDataLoader's workers pass one yielding batches.
        # ``world``: whose plan (StreamingDataLoader's main process walks its worker 0's first batch).
        epoch, world, plan = self._plan(world)
        runtime, readers = self._sync_parts()
        if self._recheck_index(epoch, world):
            runtime.loop_thread.call(self._check_indexes(runtime.runtime))
        if skip:
            # A restored torchdata worker: the plan starts at its position, nothing before it computed.
            plan.start_after(skip)
        hooked = self._hooked(readers)
        # A hook sees every sample through its own call: no first sample read by ranges behind its back.
        ranges = self._ranges if hooked is readers else None
        try:
            yield from walker(self._table, hooked, runtime, plan, ranges=ranges)
        finally:
            self._tally.publish(runtime.runtime)  # DataLoader workers' figures reach the main process
        self._complete(epoch, world)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        if not on_asyncio():  # trio: the scheduler is asyncio code; walk in a worker thread instead
            async with contextlib.aclosing(aiter_in_thread(iter(self))) as samples:
                async for sample in samples:
                    yield sample
            return
        epoch, world, plan = self._plan()
        readers = self._hooked(self._new_readers())
        try:
            async with self._new_runtime() as runtime:
                if self._recheck_index(epoch, world):
                    await self._check_indexes(runtime)
                try:
                    async for sample in aiter_plan(self._table, readers, runtime, plan):
                        yield sample
                finally:
                    self._tally.fold(runtime)  # this runtime closes with the iteration
                    self._tally.publish(None)
        finally:
            readers.close()
        self._complete(epoch, world)

    # -- random access -------------------------------------------------------------------------------

    def get_item(self, sample_id: int) -> dict[str, Any]:
        """Sample ``sample_id`` (0 ≤ id < size), downloading its shard if needed."""
        shard, index = self._table.locate(sample_id)
        walking = active_reader(self, shard)  # called by a subclass hook from a plan walk: no wait
        if walking is not None:
            return walking[index]
        runtime, readers = self._sync_parts()
        return read_sample(self._table, runtime, readers, self._ranges, shard, index)

    # -- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this process's downloads and close its storage clients and open shards.

        Optional: collection and interpreter exit do the same. The dataset stays usable; the next
        iteration or ``ds[i]`` starts afresh.
        """
        sync, readers, kept = self._sync, self._readers, self._kept
        self._sync, self._readers, self._kept = None, None, None
        if readers is not None:
            readers.close()
        if sync is not None and sync.pid == os.getpid():
            self._tally.fold(sync.runtime)
            sync.close()
        if kept is not None:
            kept.close()

    def __enter__(self) -> StreamingDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statistics ----------------------------------------------------------------------------------

    def statistics(self) -> DatasetStatistics:
        """One snapshot of the counters: every way of iterating in this process, plus the DataLoader
        workers' (published when each worker's iteration ends)."""
        ranges = self._ranges
        live = DatasetStatistics(bytes_downloaded=ranges.bytes_read, range_reads=ranges.range_reads)
        if self._sync is not None and self._sync.pid == os.getpid():
            live = live + runtime_statistics(self._sync.runtime)
        return live + self._tally.folded() + self._tally.others()

    def stats(self) -> dict[str, Any]:
        """:meth:`statistics` as a dict: downloads, cache hits, retries, consumer wait, in flight,
        evictions (with ``evicted_bytes``) and the number of ``processes`` summed."""
        return self.statistics().as_dict()
