"""``StreamingDataLoader``: a torch DataLoader that counts what it yielded, for mid-epoch checkpoints."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from astreaming import carried
from astreaming.batched import Pace, batched, lead_batch, ungroup
from astreaming.collate import collate
from astreaming.dataset import StreamingDataset
from astreaming.errors import ConfigError
from astreaming.fetch.stopping import install_stop_event
from astreaming.fetch.workerexit import WorkerExit, guard_worker_exit
from astreaming.order.world import World

__all__ = ["StreamingDataLoader", "check_batch_size", "collate"]


def _batch_len(batch: Any) -> int:
    """Samples in a batch, as mosaic counts them: the first value of a mapping, a tensor's length, or
    the length of ``batch[0]`` for a tuple of columns — except that a list of sample dicts (a
    ``collate_fn`` that keeps samples apart) counts its samples, where mosaic counted columns."""
    if isinstance(batch, Mapping):
        first = next(iter(batch.values()))
        return len(first)
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, list) and batch and isinstance(batch[0], Mapping):
        return len(batch)
    return len(batch[0])


def _accelerator_available() -> bool:
    """Whether torch would pin memory: ``torch.accelerator`` from torch 2.6, CUDA alone before."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


def check_batch_size(dataset: Any, loader_batch_size: int | None) -> None:
    """Refuse a loader whose ``batch_size`` differs from the dataset's.

    The dataset partitions each epoch into batches of its own ``batch_size`` across ranks and workers;
    a loader batching differently mixes samples of different workers in a batch and makes every
    checkpoint count wrong (mosaic documented the rule but did not check it).

    Raises:
        ConfigError: both batch sizes are set and differ (names both).
    """
    expected = getattr(dataset, "batch_size", None) if isinstance(dataset, StreamingDataset) else None
    if expected is not None and loader_batch_size is not None and loader_batch_size != expected:
        raise ConfigError(
            f"batch_size={loader_batch_size} of the DataLoader differs from the dataset's "
            f"batch_size={expected}; give both the same per-device batch size"
        )


class _WorkerInit:
    """The ``worker_init_fn`` of a StreamingDataLoader's workers: installs the event that tells a
    worker waiting for a shard to give up (the loader sets it when it shuts its workers down), then
    runs the user's own ``worker_init_fn``. Picklable for spawned workers."""

    def __init__(self, event: Any, user_fn: Callable[[int], None] | None, carry: bool = False) -> None:
        self.event = event
        self.user_fn = user_fn
        self.carry = carry

    def __call__(self, worker_id: int) -> None:
        install_stop_event(self.event)
        # The dataset's samples are this loader's items: its errors may travel as items (carried).
        carried.carry_in_this_worker = self.carry
        # The record of how run() ends, and the guard that ends an orphaned worker (its main process
        # died) instead of letting it wait forever at exit on a result pipe nobody drains (see
        # fetch.workerexit). The dataset's runtime installs the same guard in workers of a plain torch
        # DataLoader; installed once per process.
        run = guard_worker_exit()
        # Registered before anything astreaming registers in the worker, so they run last (atexit is
        # LIFO). Only a spawned worker runs them: it ends through the interpreter's shutdown, where a
        # forked one ends with os._exit right after its multiprocessing finalizers (see _ExitShortcut).
        atexit.register(_ExitShortcut(run))
        atexit.register(gc.freeze)  # should the shortcut not be taken: the final collection skips them
        if self.user_fn is not None:
            self.user_fn(worker_id)


#: A worker sends its batches (of small samples) this many at a time at most (see ``_group_size``).
GROUP_MAX = 16
#: ... and as many as hold about this many stored bytes.
GROUP_BYTES = 1 << 20
#: Groups beyond torch's prefetching by which a worker may be ahead of the slowest one (see ``Pace``).
PACE_SLACK = 3


class _ExitShortcut:
    """The last exit handler of a spawned worker: it ends the process with ``os._exit(0)``, as a forked
    worker ends, instead of finishing the interpreter's shutdown, which collects and tears down every
    module of torch's heap object by object: 1 to 5 s per worker on a loaded machine, during which the
    loader waits for it (``benchmarks/shutdown.py``; a worker ends when its loader stops it after an
    error or Ctrl-C, and at the end of each epoch without ``persistent_workers``). The exit handlers
    registered since the worker started (astreaming's own, the user's ``worker_init_fn``'s) have run;
    logging is shut down and stdout and stderr are flushed first. Skipped, as in a forked worker: exit
    handlers registered while the worker's modules were imported, and ``__del__`` at module teardown.

    Only after the worker's ``run()`` returned (``run``, multiprocessing's report of how it ended: see
    :class:`~astreaming.fetch.workerexit.WorkerExit`). Otherwise the shutdown takes its usual course, with
    the exit code it gives.
    """

    def __init__(self, run: WorkerExit | None) -> None:
        self.run = run

    def __call__(self) -> None:
        if self.run is None or not self.run.clean:
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


class StreamingDataLoader(DataLoader):  # type: ignore[type-arg]
    """A ``torch.utils.data.DataLoader`` with ``state_dict()`` / ``load_state_dict()``.

    Takes exactly the arguments of ``DataLoader``. Its ``batch_size`` must equal the dataset's. Without a
    ``collate_fn`` it collates with :func:`collate` (numpy arrays stacked without torch's read-only
    warning).
    ``state_dict()`` returns the dataset's checkpoint after the samples this loader yielded on every
    rank (assumed equal across ranks, as in mosaicml-streaming).

    Over a :class:`StreamingDataset` (whose ``__iter__`` is not overridden) its workers build whole
    batches (see ``astreaming/batched.py``): the same batches, in the same order, as torch's batching of
    the per-sample iteration, decoded column by column where the encodings and the ``collate_fn`` allow.
    Torch's own loop then runs as an inner ``DataLoader(batch_size=None)`` with the same worker settings.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.collate_fn is default_collate:
            # No collate_fn given (and batching on): collate read-only MDS arrays without a warning.
            self.collate_fn = collate
        self.num_samples_yielded = 0
        # An iteration yielded batches and has not run to its end (see state_dict).
        self._mid_epoch = False
        check_batch_size(self.dataset, self.batch_size)
        self._user_worker_init_fn = self.worker_init_fn
        self._stop_event: Any = None
        self._inner: DataLoader[Any] | None = None

    def _batched_loader(self) -> DataLoader[Any] | None:
        """The inner loader over whole batches, or None where torch batches samples itself (another
        dataset, a subclass iterating its own way, ``batch_size=None``)."""
        dataset = self.dataset
        if (
            self.batch_size is None
            or not isinstance(dataset, StreamingDataset)
            or type(dataset).__iter__ is not StreamingDataset.__iter__
        ):
            return None
        if self._inner is None:
            collate_fn = None if self.collate_fn is collate else self.collate_fn
            group = self._group_size(dataset)
            pace = None
            if group > 1 and getattr(self, "in_order", True):
                # Out of order, torch hands out groups as they come: nothing waits for a slower worker.
                context = self.multiprocessing_context or torch.multiprocessing
                pace = Pace(context, (self.prefetch_factor or 2) * group + PACE_SLACK * group)
            batches = batched(dataset, self.batch_size, self.drop_last, collate_fn, group=group, pace=pace)
            self._inner = DataLoader(
                batches,
                batch_size=None,
                num_workers=self.num_workers,
                collate_fn=_as_is,
                pin_memory=self.pin_memory,
                timeout=self.timeout,
                worker_init_fn=self.worker_init_fn,
                multiprocessing_context=self.multiprocessing_context,
                generator=self.generator,
                prefetch_factor=self.prefetch_factor,
                persistent_workers=self.persistent_workers,
                pin_memory_device=self.pin_memory_device,
                in_order=self.in_order,
            )
        return self._inner

    def _group_size(self, dataset: StreamingDataset) -> int:
        """How many batches a worker sends at a time at most (see :class:`~astreaming.batched.Group`):
        as many as fit in ``GROUP_BYTES`` (judged by the stored bytes per sample of the first shards), at
        most ``GROUP_MAX``; one without workers or with a ``timeout`` (which bounds the wait for one item,
        and a group takes longer to make than a batch). A worker sends a group early rather than hold
        it while it waits for a download (see :func:`~astreaming.batched.grouped`)."""
        if self.num_workers == 0 or self.timeout > 0 or self.batch_size is None:
            return 1
        shards = dataset.shards[:64]
        samples = sum(e.samples for e in shards)
        stored = sum(raw.bytes for e in shards for raw, _ in e.file_pairs())
        per_batch = self.batch_size * stored / max(1, samples)
        return int(max(1, min(GROUP_MAX, GROUP_BYTES // max(1.0, per_batch))))

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self.num_samples_yielded = 0
        self._mid_epoch = True
        inner = self._batched_loader()
        runner: DataLoader[Any] = inner if inner is not None else self
        fresh = not self.persistent_workers or getattr(runner, "_iterator", None) is None
        if inner is not None:
            lead = fresh and self._can_lead()
            inner.dataset._lead = lead  # type: ignore[attr-defined]  # before the workers start
            if lead:
                # The first batch without waiting for torch to start the workers (see batched.lead_batch).
                first = lead_batch(inner.dataset, self.num_workers)
                if first is not None:
                    self.num_samples_yielded += _batch_len(first)
                    yield first
        if self.num_workers > 0 and fresh:
            # New workers start with this iterator: give them a fresh event to stop them by.
            context = self.multiprocessing_context or torch.multiprocessing
            self._stop_event = context.Event()
            carry = inner is None and self._items_are_samples()
            runner.worker_init_fn = _WorkerInit(self._stop_event, self._user_worker_init_fn, carry)
        iterator: Any = None
        try:
            # Inside the try: a Ctrl-C that lands just after torch started the workers still stops them.
            iterator = iter(inner) if inner is not None else super().__iter__()
            batches = iterator
            if inner is not None:  # the workers send groups of batches: hand them out one by one
                pace = inner.dataset._pace  # type: ignore[attr-defined]
                batches = ungroup(iterator, self.num_workers, getattr(self, "in_order", True), pace)
            # Each item one sample: mosaic's count (the first value's length) read a str sample's
            # first column as that many samples, and failed on an int.
            samples = inner is None and self._items_are_samples()
            for batch in batches:
                if self.num_workers:
                    carried.raise_carried(batch)  # a worker's error, whole (see astreaming.carried)
                self.num_samples_yielded += 1 if samples else _batch_len(batch)
                yield batch
            self._mid_epoch = False
        except GeneratorExit:
            raise  # the consumer stopped early: dropping the iterator shuts its workers down at once
        except BaseException as error:
            # An error (a failed download, Ctrl-C) keeps the iterator alive in the traceback until the
            # garbage collector frees it, when its workers can no longer be told to stop and each costs
            # torch's 5 s join timeout. Stop them now, while they still listen.
            if iterator is not None:
                self._stop_workers(runner, iterator)
            if isinstance(error, KeyboardInterrupt):
                _freeze_at_exit()
            raise

    def _items_are_samples(self) -> bool:
        """Whether each item is one of the dataset's own samples, untouched (``batch_size=None`` over
        astreaming's iteration): then it counts as one sample, and a worker may send an error as an
        item (see :mod:`astreaming.carried`)."""
        dataset = self.dataset
        return (
            self.batch_size is None
            and isinstance(dataset, StreamingDataset)
            and type(dataset).__iter__ is StreamingDataset.__iter__
        )

    def _can_lead(self) -> bool:
        """Whether the main process may yield worker 0's first batch itself (:func:`lead_batch`).

        Only where that batch is exactly what worker 0 would have sent and nothing else changes: batches in
        torch's round-robin order (``in_order``), fresh workers at each iteration (persistent ones keep
        the previous iteration's split of the work), astreaming's own decoding and collation (no hook of
        a subclass, no ``collate_fn``: those could draw from the main process's random state or depend on
        a ``worker_init_fn``), no ``cache_limit`` (the main process would be one more reader of the node's
        budget), and no memory pinning to do (torch pins in its own thread).
        """
        dataset = self.dataset
        assert isinstance(dataset, StreamingDataset)
        return (
            self.num_workers > 0
            and not self.persistent_workers
            and getattr(self, "in_order", True)  # torch < 2.6 has no in_order: always in order
            and self.collate_fn is collate
            and dataset.args.cache_limit is None
            and not dataset._has_hooks()
            and not (self.pin_memory and _accelerator_available())
        )

    def _stop_workers(self, runner: DataLoader[Any], iterator: Any) -> None:
        if self._stop_event is not None:
            self._stop_event.set()  # a worker waiting for a shard stops waiting (see fetch.stopping)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if getattr(runner, "_iterator", None) is iterator:
            runner._iterator = None  # persistent workers: the next epoch starts fresh ones

    def state_dict(self) -> dict[str, Any] | None:
        """The dataset's checkpoint after what this loader yielded (None for other datasets).

        Raises:
            ConfigError: mid-epoch with ``in_order=False`` and several workers: the batches yielded
                need not be the epoch's first ones, which is all a checkpoint can say (resuming from
                it would repeat some samples and skip others).
        """
        if not isinstance(self.dataset, StreamingDataset):
            return None
        if (
            self._mid_epoch
            and self.num_samples_yielded
            and self.num_workers > 1
            and not getattr(self, "in_order", True)
        ):
            raise ConfigError(
                "state_dict: this StreamingDataLoader has in_order=False, so the batches it yielded "
                "this epoch may not be its first ones, and a checkpoint counts only how many there "
                "were; use in_order=True (the default) to checkpoint mid-epoch"
            )
        world = World.detect()
        replication = self.dataset.args.replication or 1
        num_samples = self.num_samples_yielded * world.num_ranks // replication
        return self.dataset.state_dict(num_samples, False)

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume the dataset from ``obj`` at the next iteration.

        A ``state_dict()`` taken before that iteration yields a batch is ``obj`` itself: batches this
        loader yielded before the load no longer count (mosaic added them to the loaded position).
        """
        if isinstance(self.dataset, StreamingDataset):
            self.dataset.load_state_dict(obj)
            self.num_samples_yielded = 0
            self._mid_epoch = False

    def __del__(self) -> None:
        # Shut persistent workers down now rather than at interpreter exit.
        for runner in (self, getattr(self, "_inner", None)):
            iterator = getattr(runner, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()


_freezing: list[bool] = []


def _freeze_at_exit() -> None:
    """After Ctrl-C the interpreter is most likely exiting: let its final garbage collections skip the
    objects alive then (``gc.freeze``). Over torch's heap they took 1 to 2 s of the exit on a loaded
    machine (``benchmarks/shutdown.py``); objects not in reference cycles are freed as ever, and Python
    never promised ``__del__`` for objects that still exist at exit. Registered once per process."""
    if not _freezing:
        _freezing.append(True)
        atexit.register(gc.freeze)


def _as_is(batch: Any) -> Any:
    """The inner loader's ``collate_fn``: a batch is already collated (torch would convert its arrays)."""
    return batch
