"""Mid-epoch state of one DataLoader worker's iteration, for torchdata's ``StatefulDataLoader``.

``StatefulDataLoader`` snapshots, in each worker, the dataset (``state_dict()`` without arguments: the
epoch and the resume point the iteration started from, mosaic's keys) and the worker's iterator (how many
samples it yielded). On reload it restores the dataset, creates the iterator and restores the iterator
before the first ``next``: the worker then computes the same plan (same epoch, same resume point) and
skips what it had already yielded, so the loader continues exactly where the snapshot was taken.

Only DataLoader workers get this iterator; a plain ``for`` keeps the bare plan walk, whose samples never
pass through Python code per sample (see ``engine/iterate.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from astreaming.errors import ConfigError

__all__ = ["ResumableIterator", "in_dataloader_worker"]

T = TypeVar("T")


def in_dataloader_worker() -> bool:
    """Whether this code runs in a torch DataLoader worker process."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover - torch is installed wherever DataLoaders run
        return False
    return get_worker_info() is not None


class ResumableIterator(Generic[T]):
    """An iterator with ``state_dict()``/``load_state_dict()`` (torchdata's ``Stateful``).

    Args:
        start: ``start(skip)`` -> the iteration, with its first ``skip`` samples left out; called at the
            first ``next`` (after any ``load_state_dict``).
    """

    def __init__(self, start: Callable[[int], Iterator[T]]) -> None:
        self._start = start
        self._it: Iterator[T] | None = None
        self._skip = 0
        self._yielded = 0

    def __iter__(self) -> ResumableIterator[T]:
        return self

    def __next__(self) -> T:
        if self._it is None:
            self._it = self._start(self._skip)
        item = next(self._it)
        self._yielded += 1
        return item

    def state_dict(self) -> dict[str, int]:
        """``{"samples_yielded": n}``: samples of this worker's plan yielded so far."""
        return {"samples_yielded": self._skip + self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after ``state["samples_yielded"]`` samples (before the first ``next`` only).

        Raises:
            ConfigError: the iteration already started, or the state lacks ``samples_yielded``.
        """
        if self._it is not None:
            raise ConfigError("load_state_dict: the iteration already started; load the state first")
        try:
            self._skip = int(state["samples_yielded"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"load_state_dict: expected {{'samples_yielded': int}}, got {state!r}"
            ) from None
        self._yielded = 0

    def close(self) -> None:
        """Stop the iteration (its downloads are cancelled)."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
