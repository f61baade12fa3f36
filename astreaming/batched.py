"""Whole batches from a StreamingDataset: what ``StreamingDataLoader`` iterates, in its workers or not.

torch's DataLoader builds a batch sample by sample: it calls ``next`` on the dataset ``batch_size``
times, collates the list of sample dicts, and a worker then pickles the batch to the main process,
moving each tensor through its own shared-memory segment and file descriptor. For small samples that
per-sample Python and the per-tensor hand-over cost more than the decoding itself.

Here a worker walks its plan a batch at a time (the same samples, in the same order, as torch's batching
of the per-sample iteration: consecutive runs of ``batch_size`` of the worker's own samples, the last
one shorter or dropped with ``drop_last``) and decodes each batch's samples column by column
(``format/mds/columns.py``): a fixed-size numeric column becomes one array without a Python object per
sample. The batch equals what :func:`~astreaming.collate.collate` makes of the per-sample dicts (same
keys, types, dtypes, shapes and values). A small array leaves a worker inside the pickle of the batch and
becomes a tensor when the main process unpickles it, instead of taking a shared-memory segment of its
own; a large one is written into shared memory, as torch does.

Where a batch cannot be decoded column by column (a ``collate_fn`` of the user's, a subclass's
``get_item``/``__getitem__`` hook, JSONL or CSV shards, differing column layouts within one batch) the
batch's samples are decoded one by one and collated by the loader's ``collate_fn``, still without a
Python call per sample between the walk and the collation.
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import IterableDataset, get_worker_info

from astreaming.carried import carry_errors
from astreaming.collate import collate
from astreaming.dataset import StreamingDataset
from astreaming.engine.iterate import DownloadWait, batch_decoder, iter_plan_batches
from astreaming.format.mds.columns import STACKED_KINDS, Columns
from astreaming.format.mds.packed import PackedList, load_list, payload
from astreaming.format.reader import ShardReader
from astreaming.order.world import World

__all__ = [
    "BatchedDataset",
    "Group",
    "Pace",
    "assemble",
    "batched",
    "group_sizes",
    "grouped",
    "lead_batch",
    "led_world",
    "ungroup",
]

#: A stacked column up to this size travels inside the pickle of its batch; a larger one goes through
#: a shared-memory segment (one file descriptor per tensor, which costs ~0.5 ms to hand over).
INBAND_MAX = 1 << 20


class BatchedDataset:
    """The batches a DataLoader with ``batch_size`` would build from a dataset's samples, built whole.

    A view of the user's dataset, made by :func:`batched`: its class derives from this class and from
    the dataset's own class, and it shares the dataset's attributes (one ``__dict__``), so that a
    ``worker_init_fn`` reading or setting ``get_worker_info().dataset`` sees the user's dataset, down to
    ``isinstance(info.dataset, TheirSubclass)``; only its ``__iter__`` (batches) is of its own.
    """

    __slots__ = ("_batching", "_group", "_lead", "_pace", "_source")

    _source: StreamingDataset
    _batching: tuple[int, bool, Callable[[list[Any]], Any] | None]
    #: The loader's main process yields worker 0's first batch itself (see :func:`lead_batch`).
    _lead: bool
    #: A DataLoader worker sends its batches up to this many at a time (see :class:`Group`).
    _group: int
    #: How far a worker's groups may run ahead of the other workers' (see :class:`Pace`).
    _pace: Pace | None

    def __iter__(self) -> Iterator[Any]:
        batch_size, _, collate_fn = self._batching
        info = get_worker_info()
        in_worker = info is not None
        world, skip = None, 0
        if self._lead and in_worker:
            world = led_world(World.detect())
            skip = batch_size if world.worker_of_rank == 0 else 0  # the main process yielded it
        grouping = info is not None and self._group > 1
        walker = functools.partial(
            iter_plan_batches, batch_size=batch_size, decoder=_decoder(collate_fn), announce_waits=grouping
        )
        walk: Callable[..., Iterator[Any]] = self._walk  # type: ignore[attr-defined]
        batches: Iterator[Any] = self._batches(walk(skip, walker, world), in_worker)
        if info is not None:
            # An astreaming error reaches the main process whole, attributes included (torch would
            # re-raise a copy made from its message): see astreaming.carried.
            batches = carry_errors(batches, info.id)
        if info is None or not grouping:
            yield from batches
            return
        yield from grouped(batches, info.id, self._group, self._pace)

    def _batches(self, walk: Iterator[list[Any] | DownloadWait], in_worker: bool) -> Iterator[Any]:
        batch_size, drop_last, collate_fn = self._batching
        for pieces in walk:
            if isinstance(pieces, DownloadWait):
                yield pieces
                continue
            if drop_last and sum(map(len, pieces)) < batch_size:
                continue  # the worker's last batch; the walk still ends (and completes the epoch)
            yield assemble(pieces, collate_fn, in_worker=in_worker)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A spawned worker gets the user's dataset as it pickles itself, and the view is made again
        # there (its class is made at run time: it cannot be pickled by name).
        return batched, (self._source, *self._batching, self._lead, self._group, self._pace)


class Group(NamedTuple):
    """Consecutive batches of one DataLoader worker, sent to the main process as one item.

    torch's DataLoader pays per item it moves from a worker: the main process sends the worker an index,
    wakes queue threads on both sides, and wraps each ``next`` in a profiler range; for small batches
    that costs more than making the batch. A worker of a :class:`BatchedDataset` with ``group`` > 1 sends
    its batches up to ``group`` at a time (see :func:`grouped` and
    :func:`group_sizes`), and :func:`ungroup` hands them out in the
    order torch would have handed out the single batches. A named tuple: torch's memory pinning rebuilds
    it with its batches pinned (it turns a plain tuple into a list, and leaves other classes as they are).

    Attributes:
        worker: torch's id of the worker.
        round: The group's number among the worker's groups (0, 1, ...): the worker's item number.
        batches: Its batches (at least one), in the worker's order.
    """

    worker: int
    round: int
    batches: list[Any]


def group_sizes(group: int) -> Iterator[int]:
    """How many batches each of a worker's groups holds: 1, 2, 4, ... up to ``group``, then ``group``.

    The first groups are small because the loader waits for a worker's first group before anything of
    that worker: a first group of ``group`` batches made the second batch of a resumed epoch wait for 16
    batches of a worker that still opens a new shard for nearly every sample (py1e at a resume point:
    0.46 s became 2.3 s at 10M samples with 8 workers, ``benchmarks/resume.py``), and each worker then
    held 16 batches' shards open at once (+50 MB a worker).
    """
    size = 1
    while size < group:
        yield size
        size *= 2
    yield from itertools.repeat(group)


class Pace:
    """How many batches each worker may have sent by the end of its next group: the loader's main
    process raises it as the batches of its slowest worker arrive, the workers read it.

    torch hands out one item of each worker in turn, so a worker sending bigger groups than another
    (its shards ready, the other's downloading) gets ahead of it by the difference at every turn, and
    :func:`ungroup` would keep its batches until the other's arrive: without a bound, up to an epoch of
    them. A worker's groups therefore end where its batch count reaches :meth:`allowance`: the slowest
    running worker's count, as received, plus ``lead``, which is more than torch's prefetching lets any
    worker run ahead (so groups of workers that keep pace, over local data, never stop at it). A worker
    that is ahead still sends one batch per item: it keeps the pace of the slowest one, as torch does.

    One shared 64-bit integer (``RawValue``: a lone aligned word, written by one process); it reaches a
    spawned worker inside the dataset it is given.

    Args:
        context: The loader's multiprocessing context (or the ``multiprocessing`` module).
        lead: Batches a worker may be ahead of the slowest one.
    """

    def __init__(self, context: Any, lead: int) -> None:
        self.lead = lead
        self._value = context.RawValue("q", lead)

    def allowance(self) -> int:
        """The batch count a worker's next group may reach."""
        return int(self._value.value)

    def note_slowest(self, received: int) -> None:
        """The slowest running worker's batches received so far in this epoch (0 at its start)."""
        self._value.value = received + self.lead


def grouped(batches: Iterator[Any], worker: int, size: int, pace: Pace | None) -> Iterator[Group]:
    """A DataLoader worker's batches as :class:`Group`\\ s of up to ``size`` batches (fewer in its first
    groups: :func:`group_sizes`).

    A group is sent early where waiting would hold its batches back: at a :data:`DOWNLOAD_WAIT` from the
    walk (the next batch needs a shard that must be downloaded), when the worker's count reaches
    ``pace``'s allowance (at least one batch per group), and when making the next batch fails: the
    batches made before an error go first, then the error is raised (torch delivers it after them).

    Args:
        batches: The worker's batches, with a :data:`DOWNLOAD_WAIT` before each wait for a download.
        worker: torch's id of the worker.
        size: Batches per group at most.
        pace: The bound on how far this worker's groups may run ahead of the others' (None: none).
    """
    rounds = itertools.count()
    sizes = group_sizes(size)
    target = next(sizes)
    sent = 0
    chunk: list[Any] = []
    try:
        for batch in batches:
            if isinstance(batch, DownloadWait):
                if chunk:
                    yield Group(worker, next(rounds), chunk)
                    sent, chunk, target = sent + len(chunk), [], next(sizes)
                continue
            chunk.append(batch)
            limit = target if pace is None else min(target, max(1, pace.allowance() - sent))
            if len(chunk) >= limit:
                yield Group(worker, next(rounds), chunk)
                sent, chunk, target = sent + len(chunk), [], next(sizes)
    except Exception:
        if chunk:
            yield Group(worker, next(rounds), chunk)  # the resumed generator raises the error next
        raise
    if chunk:
        yield Group(worker, next(rounds), chunk)


def ungroup(
    items: Iterator[Any], workers: int, in_order: bool = True, pace: Pace | None = None
) -> Iterator[Any]:
    """The batches of a DataLoader whose workers send :class:`Group`\\ s, one by one, in torch's order.

    torch hands out the single batches of its workers round-robin (each worker's first, then each one's
    second, ...), skipping a worker once it has run out. Groups may hold any number of batches (a worker
    sends early rather than wait for a download): each worker's batches are kept in arrival order and
    handed out round-robin as far as they have arrived. torch also hands out the groups (its items)
    round-robin, so a worker has run out once another's later item arrives before its own: the item of
    round ``r`` of worker ``w`` means that every worker before ``w`` that has not sent ``r + 1`` items,
    and every one after it that has not sent ``r``, has ended; once the items end, all have.
    Without ``in_order`` torch hands out items as they arrive: the groups' batches come one after the
    other. Items that are not groups (a loader without workers) pass through.

    Before an error raised by torch (a worker's), the batches handed out are those torch would have
    handed out first, in its order (a prefix of them). A worker's astreaming error comes as a
    :class:`~astreaming.carried.CarriedError` batch, in the same order: the loader raises it.

    Args:
        items: The inner loader's items.
        workers: The loader's workers.
        in_order: The loader's ``in_order``.
        pace: Told the slowest running worker's count as batches arrive (see :class:`Pace`).
    """
    if not in_order:
        for item in items:
            if isinstance(item, Group):
                yield from item.batches
            else:
                yield item
        return
    queues: list[collections.deque[Any]] = [collections.deque() for _ in range(workers)]
    received = [0] * workers  # batches, per worker
    sent = [0] * workers  # items (groups), per worker
    running = set(range(workers))
    turn = 0  # the worker whose batch is handed out next
    if pace is not None:
        pace.note_slowest(0)
    for item in items:
        if not isinstance(item, Group):
            yield item
            continue
        w, r = item.worker, item.round
        queues[w].extend(item.batches)
        received[w] += len(item.batches)
        sent[w] = r + 1
        for other in list(running):
            if sent[other] < (r + 1 if other < w else r):
                running.discard(other)
        if pace is not None and running:
            pace.note_slowest(min(received[o] for o in running))
        while queues[turn] or turn not in running:
            if queues[turn]:
                yield queues[turn].popleft()
            elif not running and not any(queues):
                break
            turn = (turn + 1) % workers
    # The items ended: every worker has; the rest round-robin over those with batches left.
    while any(queues):
        if queues[turn]:
            yield queues[turn].popleft()
        turn = (turn + 1) % workers


def led_world(world: World) -> World:
    """The worker whose plan a DataLoader worker walks when the main process leads (:func:`lead_batch`).

    torch hands out batches round-robin over its workers 0, 1, ..., W-1, skipping those that ran out. Its
    worker k walks worker k + 1's plan and its last worker walks worker 0's without the first batch, which
    the main process yielded before: the round-robin then continues exactly where the main process's batch
    left it (worker 1's first batch, ..., worker W-1's, worker 0's second, ...), down to the end of the
    epoch, where the workers with fewer batches drop out of the rounds as before.
    """
    return world.with_worker((world.worker_of_rank + 1) % world.workers_per_rank)


def lead_batch(view: object, num_workers: int) -> Any | None:
    """Worker 0's first batch of the epoch, computed in the calling (the loader's main) process.

    It arrives before torch has started any worker: the workers take the rest (see :func:`led_world`).
    None when worker 0 yields no batch (an empty part, or its only batch short under ``drop_last``).

    Args:
        view: The loader's :func:`batched` view, with its workers' ``_lead`` set.
        num_workers: The loader's workers per rank.
    """
    assert isinstance(view, BatchedDataset)
    batch_size, drop_last, collate_fn = view._batching
    here = World.detect()
    world = World.from_rank(here.num_nodes, here.ranks_per_node, num_workers, here.rank, 0)
    walker = functools.partial(iter_plan_batches, batch_size=batch_size, decoder=_decoder(collate_fn))
    walk: Iterator[Any] = view._walk(0, walker, world)  # type: ignore[attr-defined]
    try:
        pieces = next(walk, None)
        if pieces is None or (drop_last and sum(map(len, pieces)) < batch_size):
            return None
        return assemble(pieces, collate_fn, in_worker=False)
    finally:
        close: Callable[[], None] = walk.close  # type: ignore[attr-defined]
        close()  # stopped early: the epoch is not completed by this walk


def batched(
    dataset: StreamingDataset,
    batch_size: int,
    drop_last: bool,
    collate_fn: Callable[[list[Any]], Any] | None,
    lead: bool = False,
    group: int = 1,
    pace: Pace | None = None,
) -> IterableDataset[Any]:
    """The :class:`BatchedDataset` view of ``dataset`` (an instance of both).

    Args:
        dataset: The dataset (its ``__iter__`` is not overridden; hooks are honoured).
        batch_size: Samples per batch (the dataset's).
        drop_last: Drop each worker's last batch when it is short.
        collate_fn: Collates a list of samples; None: :func:`~astreaming.collate.collate`, column
            by column where the encodings allow.
        lead: The loader's main process yields worker 0's first batch (:func:`lead_batch`).
        group: A DataLoader worker sends up to this many batches at a time (:class:`Group`; read them
            back with :func:`ungroup`).
        pace: Bounds how far a worker's groups run ahead of the others' (:class:`Pace`).
    """
    view: Any = object.__new__(_view_class(type(dataset)))
    view.__dict__ = dataset.__dict__  # one set of attributes: what either sets, both see
    view._source = dataset
    view._batching = (batch_size, drop_last, collate_fn)
    view._lead = lead
    view._group = group
    view._pace = pace
    made: IterableDataset[Any] = view
    return made


@functools.cache
def _view_class(cls: type[StreamingDataset]) -> type[BatchedDataset]:
    name = f"Batched{cls.__name__}"
    made: type[BatchedDataset] = type(name, (BatchedDataset, cls), {"__slots__": (), "__module__": __name__})
    return made


def _decoder(collate_fn: Callable[[list[Any]], Any] | None) -> Callable[[ShardReader], Any]:
    return _samples_decoder if collate_fn is not None else _columns_decoder


def _samples_decoder(reader: ShardReader) -> Callable[[list[int]], list[Any]]:
    decode = batch_decoder(reader)

    def samples(indices: list[int]) -> list[Any]:
        out = decode(indices)
        return out if type(out) is list else list(out)

    return samples


def _columns_decoder(reader: ShardReader) -> Callable[[list[int]], Columns | list[Any]]:
    get_columns: Callable[[list[int]], Columns | list[Any]] | None = getattr(reader, "get_columns", None)
    return get_columns if get_columns is not None else _samples_decoder(reader)


def assemble(pieces: list[Any], collate_fn: Callable[[list[Any]], Any] | None, *, in_worker: bool) -> Any:
    """One batch from the decoded pieces of its segments (:class:`Columns` or lists of samples).

    Args:
        pieces: What the batch's segments decoded to, in order.
        collate_fn: The loader's collate function; None: the default collation, column by column when
            every piece is columns of one layout.
        in_worker: The batch leaves a DataLoader worker (small arrays then travel inside its pickle).
    """
    if collate_fn is None:
        first = pieces[0]
        if (
            isinstance(first, Columns)
            and _columnar(first)
            and all(isinstance(p, Columns) and p.layout.key == first.layout.key for p in pieces)
        ):
            return _stack(pieces, in_worker)
        collate_fn = collate
    samples: list[Any] = []
    for piece in pieces:
        samples.extend(piece.samples() if isinstance(piece, Columns) else piece)
    return collate_fn(samples)


def _columnar(columns: Columns) -> bool:
    # torch's collation of numpy uint64 scalars fails ("an integer is required"): let it fail as before.
    return not any(c.kind == "scalar" and c.dtype == np.uint64 for c in columns.layout.columns)


def _stack(pieces: list[Columns], in_worker: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c, col in enumerate(pieces[0].layout.columns):
        parts = [p.values[c] for p in pieces]
        if col.kind in STACKED_KINDS:
            out[col.name] = _tensor(parts, in_worker)
            continue
        if col.kind in ("str", "bytes"):
            # torch collates str and bytes into the list itself.
            out[col.name] = _listed(parts, in_worker)
            continue
        values = parts[0] if len(parts) == 1 else [v for part in parts for v in part]
        out[col.name] = collate(values)
    return out


def _listed(parts: list[Any], in_worker: bool) -> Any:
    """The list of a str or bytes column (concatenating the pieces), or its stand-in leaving a worker."""
    if all(isinstance(p, PackedList) for p in parts):
        data = payload(parts)
        return _InbandList(data) if in_worker else load_list(data)
    lists = [p.tolist() if isinstance(p, PackedList) else p for p in parts]
    return lists[0] if len(lists) == 1 else [v for part in lists for v in part]


def _tensor(parts: list[npt.NDArray[Any]], in_worker: bool) -> Any:
    """The tensor of a stacked column (concatenating the pieces), or its stand-in leaving a worker."""
    nbytes = sum(p.nbytes for p in parts)
    if not in_worker or nbytes <= INBAND_MAX:
        array = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return torch.from_numpy(array) if not in_worker else _Inband(array)
    shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
    dtype = torch.from_numpy(np.empty(0, parts[0].dtype)).dtype
    out = torch.empty(shape, dtype=dtype)
    out.share_memory_()  # type: ignore[no-untyped-call]
    np.concatenate(parts, out=out.numpy())
    return out


class _Inband:
    """A stacked column leaving a worker: pickled as its array, unpickled as a tensor over it."""

    __slots__ = ("array",)

    def __init__(self, array: npt.NDArray[Any]) -> None:
        self.array = array

    def __reduce__(self) -> tuple[Callable[[npt.NDArray[Any]], torch.Tensor], tuple[npt.NDArray[Any]]]:
        return _from_numpy, (self.array,)


def _from_numpy(array: npt.NDArray[Any]) -> torch.Tensor:
    return torch.from_numpy(array)


class _InbandList:
    """A packed str or bytes column leaving a worker: pickled as the pickle of its list (made by numpy,
    see ``format/mds/packed.py``), unpickled as the list."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Callable[[bytes], list[Any]], tuple[bytes]]:
        return load_list, (self.data,)
