"""Mid-epoch state of one DataLoader worker's iteration, for torchdata's ``StatefulDataLoader``.

``StatefulDataLoader`` snapshots, in each worker, the dataset (``state_dict()`` without arguments: the
epoch and the resume point the iteration started from, mosaic's keys) and the worker's iterator (how many
samples it yielded). On reload it restores the dataset, creates the iterator and restores the iterator
before the first ``next``: the worker then plans the same epoch from the same resume point, starting
right after the samples it had already yielded (``LazyWorkerPlan.start_after``: the batch and place in
it are arithmetic, nothing of the plan before them is computed), so the loader continues exactly where
the snapshot was taken.

The restored iteration starts at once (its first sample is read ahead): a worker whose part was already
all yielded completes its part of the epoch then and there. torchdata restores a state saved after the
epoch ended (its iterator "finished") only to replace it with a fresh iterator, which must run the next
epoch: the epoch must count as completed before the fresh workers start, whatever became of the restored
ones (torch stops them as soon as it has replaced them).

DataLoader workers, and a ``num_workers=0`` loader's fetcher in the main process, get this iterator
(:func:`fetched_by_torch`); a plain ``for`` keeps the bare plan walk, whose samples never pass through
Python code per sample (see ``engine/iterate.py``).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from astreaming.errors import ConfigError

__all__ = ["ResumableIterator", "fetched_by_torch", "in_dataloader_worker"]

T = TypeVar("T")


def in_dataloader_worker() -> bool:
    """Whether this code runs in a torch DataLoader worker process."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover - torch is installed wherever DataLoaders run
        return False
    return get_worker_info() is not None


#: The module of torch's dataset fetchers, which call ``iter(dataset)`` for a DataLoader's iteration.
_TORCH_FETCH = "torch.utils.data._utils.fetch"


def fetched_by_torch(depth: int = 2) -> bool:
    """Whether the ``__iter__`` calling this was called by a torch DataLoader (a worker's, or, with
    ``num_workers=0``, this process's fetcher: torchdata's ``StatefulDataLoader`` then asks the iterator
    for its position in this process).

    Args:
        depth: Frames from this function up to the caller of ``iter(dataset)`` (``iter`` itself, a
            builtin, has no frame): 2 when called straight from ``__iter__``. A subclass's ``__iter__``
            calling ``super().__iter__()`` adds frames named ``__iter__``: they are passed over.
    """
    if in_dataloader_worker():
        return True
    try:
        frame = sys._getframe(depth)
    except ValueError:  # pragma: no cover - called from the bottom of the stack
        return False
    while frame.f_code.co_name == "__iter__" and frame.f_back is not None:
        frame = frame.f_back
    return frame.f_globals.get("__name__") == _TORCH_FETCH


class ResumableIterator(Generic[T]):
    """An iterator with ``state_dict()``/``load_state_dict()`` (torchdata's ``Stateful``).

    Args:
        start: ``start(skip)`` -> the iteration, with its first ``skip`` samples left out; called at the
            first ``next`` (after any ``load_state_dict``).
    """

    def __init__(self, start: Callable[[int], Iterator[T]]) -> None:
        self._start = start
        self._walk: Iterator[T] | None = None
        self._it: Iterator[T] | None = None
        self._skip = 0
        self._yielded = 0

    def __iter__(self) -> ResumableIterator[T]:
        return self

    def __next__(self) -> T:
        if self._it is None:
            self._it = self._walk = self._start(self._skip)
        item = next(self._it)
        self._yielded += 1
        return item

    def state_dict(self) -> dict[str, int]:
        """``{"samples_yielded": n}``: samples of this worker's plan yielded so far."""
        return {"samples_yielded": self._skip + self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after ``state["samples_yielded"]`` samples (before the first ``next`` only).

        Starts the iteration and reads its first sample ahead (see the module's docstring): a part
        already yielded whole completes the epoch here.

        Raises:
            ConfigError: the iteration already started, or the state lacks a ``samples_yielded`` >= 0.
        """
        if self._it is not None:
            raise ConfigError("load_state_dict: the iteration already started; load the state first")
        try:
            skip = int(state["samples_yielded"])
        except (KeyError, TypeError, ValueError):
            skip = -1
        if skip < 0:
            raise ConfigError(f"load_state_dict: expected {{'samples_yielded': int >= 0}}, got {state!r}")
        self._skip = skip
        self._yielded = 0
        self._walk = self._start(self._skip)
        try:
            first = next(self._walk)
        except StopIteration:
            self._it = iter(())
        else:
            self._it = itertools.chain((first,), self._walk)

    def close(self) -> None:
        """Stop the iteration (its downloads are cancelled)."""
        close = getattr(self._walk, "close", None)
        if close is not None:
            close()
