"""Iteration through a subclass's sample hook (``get_item`` or ``__getitem__``), decoding once.

mosaicml-streaming yields ``self[sample_id]`` from ``__iter__``, and its ``Array`` base routes every int
index through ``get_item``: a subclass that transforms samples (tokenising, augmenting) overrides either
and sees ``for``, DataLoader workers and ``ds[i]`` alike. astreaming does the same for ``for`` and
``async for``: the plan walk still owns prefetching, readiness and pinning, but instead of decoding a
shard's samples it hands each sample id to the hook.

The hook's own call to the base ``get_item`` must not decode again nor wait for a shard the walk already
holds: while the walk calls the hook, the shard's open reader is published in a thread-local slot, and
``StreamingDataset.get_item`` reads from it (:func:`active_reader`). The slot is set only for the
duration of one hook call, so a suspended ``async for`` never leaves it set for other tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from astreaming.engine.readers import ReaderCache
from astreaming.format.reader import ShardReader

__all__ = ["HookedReaders", "active_reader"]

_slot = threading.local()


def active_reader(owner: object, shard: int) -> ShardReader | None:
    """The reader of ``shard`` that a walk of ``owner`` holds while it calls the hook, else None."""
    entry: tuple[object, int, ShardReader] | None = getattr(_slot, "entry", None)
    if entry is not None and entry[0] is owner and entry[1] == shard:
        return entry[2]
    return None


class _HookedReader:
    """A shard reader whose samples come from ``hook(global sample id)`` (the walk calls ``get_many``)."""

    def __init__(
        self, owner: object, shard: int, reader: ShardReader, first_id: int, hook: Callable[[int], Any]
    ) -> None:
        self.owner = owner
        self.shard = shard
        self.reader = reader
        self.first_id = first_id
        self.hook = hook
        self.source = reader.source

    @property
    def samples(self) -> int:
        return self.reader.samples

    def __len__(self) -> int:
        return len(self.reader)

    def get_many(self, indices: Iterable[int]) -> Iterator[Any]:
        for index in indices:
            yield self.get_item(index)

    def get_item(self, index: int) -> Any:
        previous = getattr(_slot, "entry", None)
        _slot.entry = (self.owner, self.shard, self.reader)
        try:
            return self.hook(self.first_id + index)
        finally:
            _slot.entry = previous

    __getitem__ = get_item

    def get_bytes(self, index: int) -> bytes:
        return self.reader.get_bytes(index)

    def release_pages(self) -> None:
        self.reader.release_pages()

    def close(self) -> None:
        self.reader.close()


class HookedReaders(ReaderCache):
    """The readers of a plan walk that yields ``hook(sample_id)`` instead of the decoded sample.

    Args:
        inner: The readers actually mapping the shards (owned by the caller; closed by :meth:`close`).
        owner: The dataset whose ``get_item`` may read from the walk's readers (see :func:`active_reader`).
        hook: Called with each global sample id of the plan, in order; its result is what is yielded.
    """

    def __init__(self, inner: ReaderCache, owner: object, hook: Callable[[int], Any]) -> None:
        super().__init__(inner.table, allow_unsafe_types=inner.allow_unsafe_types, max_open=inner.max_open)
        self.inner = inner
        self.owner = owner
        self.hook = hook

    def get(self, shard: int, *, inode: int | None = None) -> ShardReader:
        first_id = int(self.table.bounds[shard])
        return _HookedReader(self.owner, shard, self.inner.get(shard, inode=inode), first_id, self.hook)

    def drop(self, shard: int) -> None:
        self.inner.drop(shard)

    def prune_replaced(self) -> None:
        self.inner.prune_replaced()

    def weight(self, shard: int) -> int:
        return self.inner.weight(shard)

    def release_pages(self, *, keep: int | None = None) -> None:
        self.inner.release_pages(keep=keep)

    def close(self) -> None:
        self.inner.close()
