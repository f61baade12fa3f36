"""``StreamingDataLoader``: a torch DataLoader that counts what it yielded, for mid-epoch checkpoints."""

from __future__ import annotations

import atexit
import gc
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate, get_worker_info
from torch.utils.data._utils.collate import collate as _collate
from torch.utils.data._utils.collate import default_collate_fn_map

from astreaming.dataset import StreamingDataset
from astreaming.errors import ConfigError
from astreaming.fetch.stopping import install_stop_event
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


def _collate_ndarray(batch: list[np.ndarray], *, collate_fn_map: Any = None) -> Any:
    """Stack same-shaped numeric arrays into one tensor, copying each sample once.

    torch's own rule wraps each array with ``torch.as_tensor`` first, which warns for the read-only
    arrays MDS decodes ("The given NumPy array is not writable"). Here the arrays are copied straight
    into the batch tensor, allocated in shared memory inside a DataLoader worker as torch does, so the
    batch reaches the main process without another copy.
    """
    elem = batch[0]
    if elem.dtype.kind not in "biuf" or any(a.shape != elem.shape for a in batch):
        # Strings, objects, ragged shapes: torch's rule (and its error messages).
        return default_collate_fn_map[np.ndarray](batch, collate_fn_map=collate_fn_map)
    dtype = elem.dtype.newbyteorder("=")
    out = torch.empty((len(batch), *elem.shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    if get_worker_info() is not None:
        out.share_memory_()  # type: ignore[no-untyped-call]
    np.stack(batch, out=out.numpy(), casting="same_kind")
    return out


_COLLATE_MAP = {**default_collate_fn_map, np.ndarray: _collate_ndarray}


def collate(batch: list[Any]) -> Any:
    """``torch.utils.data.default_collate``, except that numpy arrays are stacked without torch's
    read-only warning and without an extra copy (the default of :class:`StreamingDataLoader`)."""
    return _collate(batch, collate_fn_map=_COLLATE_MAP)


class _WorkerInit:
    """The ``worker_init_fn`` of a StreamingDataLoader's workers: installs the event that tells a
    worker waiting for a shard to give up (the loader sets it when it shuts its workers down), then
    runs the user's own ``worker_init_fn``. Picklable for spawned workers."""

    def __init__(self, event: Any, user_fn: Callable[[int], None] | None) -> None:
        self.event = event
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> None:
        install_stop_event(self.event)
        # Registered before anything astreaming registers in the worker, so it runs last (atexit is LIFO):
        # a spawned worker ends through the interpreter's shutdown, whose full garbage collection over
        # torch's objects took 2 to 3 s per worker, each second of which delays the loader's shutdown.
        # Frozen objects are skipped by it; the process is exiting, nothing else needs them collected.
        atexit.register(gc.freeze)
        if self.user_fn is not None:
            self.user_fn(worker_id)


class StreamingDataLoader(DataLoader):  # type: ignore[type-arg]
    """A ``torch.utils.data.DataLoader`` with ``state_dict()`` / ``load_state_dict()``.

    Takes exactly the arguments of ``DataLoader``. Its ``batch_size`` must equal the dataset's. Without a
    ``collate_fn`` it collates with :func:`collate` (numpy arrays stacked without torch's read-only
    warning).
    ``state_dict()`` returns the dataset's checkpoint after the samples this loader yielded on every
    rank (assumed equal across ranks, as in mosaicml-streaming).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.collate_fn is default_collate:
            # No collate_fn given (and batching on): collate read-only MDS arrays without a warning.
            self.collate_fn = collate
        self.num_samples_yielded = 0
        check_batch_size(self.dataset, self.batch_size)
        self._user_worker_init_fn = self.worker_init_fn
        self._stop_event: Any = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self.num_samples_yielded = 0
        if self.num_workers > 0 and (not self.persistent_workers or getattr(self, "_iterator", None) is None):
            # New workers start with this iterator: give them a fresh event to stop them by.
            context = self.multiprocessing_context or torch.multiprocessing
            self._stop_event = context.Event()
            self.worker_init_fn = _WorkerInit(self._stop_event, self._user_worker_init_fn)
        iterator = super().__iter__()
        try:
            for batch in iterator:
                self.num_samples_yielded += _batch_len(batch)
                yield batch
        except GeneratorExit:
            raise  # the consumer stopped early: dropping the iterator shuts its workers down at once
        except BaseException:
            # An error (a failed download, Ctrl-C) keeps the iterator alive in the traceback until the
            # garbage collector frees it, when its workers can no longer be told to stop and each costs
            # torch's 5 s join timeout. Stop them now, while they still listen.
            self._stop_workers(iterator)
            raise

    def _stop_workers(self, iterator: Any) -> None:
        if self._stop_event is not None:
            self._stop_event.set()  # a worker waiting for a shard stops waiting (see fetch.stopping)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if getattr(self, "_iterator", None) is iterator:
            self._iterator = None  # persistent workers: the next epoch starts fresh ones

    def state_dict(self) -> dict[str, Any] | None:
        """The dataset's checkpoint after what this loader yielded (None for other datasets)."""
        if not isinstance(self.dataset, StreamingDataset):
            return None
        world = World.detect()
        replication = self.dataset.args.replication or 1
        num_samples = self.num_samples_yielded * world.num_ranks // replication
        return self.dataset.state_dict(num_samples, False)

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume the dataset from ``obj`` at the next iteration."""
        if isinstance(self.dataset, StreamingDataset):
            self.dataset.load_state_dict(obj)

    def __del__(self) -> None:
        # Shut persistent workers down now rather than at interpreter exit.
        iterator = getattr(self, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
