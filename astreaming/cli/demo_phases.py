"""The measured parts of ``astreaming demo``: a cold epoch, a warm epoch and a resumed epoch.

Every phase iterates a :class:`StreamingDataLoader` (``num_workers`` as asked, batches kept as lists of
sample dicts) and checks each sample with a :class:`SampleChecker` as it arrives.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from astreaming.cli.demo_data import DemoCheckError, SampleChecker

__all__ = ["DatasetFactory", "EpochRun", "ResumeRun", "collate_columns", "rows", "run_epoch", "run_resume"]


def collate_columns(batch: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate a batch into ``{column: [values]}`` without converting to tensors (module level: picklable).

    A mapping, not a list of dicts: ``StreamingDataLoader`` counts a batch as mosaic does, by the length
    of a mapping's first value, but by ``len(batch[0])`` for a list (the number of columns of its first
    sample), which would make every checkpoint wrong.
    """
    return {key: [sample[key] for sample in batch] for key in batch[0]}


def rows(batch: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """The samples of a :func:`collate_columns` batch."""
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys), strict=True):
        yield dict(zip(keys, values, strict=True))


@dataclass
class DatasetFactory:
    """Builds identical datasets and loaders over one remote and cache, and shuts them down at the end.

    Args:
        remote: URL of the dataset.
        local: Cache directory shared by every dataset built.
        batch_size: Per-device batch size.
        workers: DataLoader worker processes (0 = iterate in this process).
        seed: Shuffle seed.
        download_retry: Retries of a failed download.
    """

    remote: str
    local: str
    batch_size: int
    workers: int
    seed: int
    download_retry: int = 2
    _made: list[Any] = field(default_factory=list, repr=False)

    def dataset(self) -> Any:
        """A new ``StreamingDataset`` (downloads index.json now)."""
        # Imported here, not at module level: torch is imported only when a demo runs, not for --help.
        from astreaming.dataset import StreamingDataset

        ds = StreamingDataset(
            remote=self.remote,
            local=self.local,
            batch_size=self.batch_size,
            shuffle=True,
            shuffle_seed=self.seed,
            download_retry=self.download_retry,
            validate_hash="xxh64",  # check every downloaded shard against the index
        )
        self._made.append(ds)
        return ds

    def loader(self, dataset: Any) -> Any:
        """A ``StreamingDataLoader`` over ``dataset`` yielding :func:`collate_columns` batches."""
        from astreaming.dataloader import StreamingDataLoader

        return StreamingDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.workers, collate_fn=collate_columns
        )

    def samples(self, dataset: Any) -> Generator[Mapping[str, Any], None, None]:
        """Every sample of one epoch: straight from the dataset without workers, else via a loader.

        Without workers the first sample is measured, not the first batch: a shuffled batch draws from
        many shards, so its arrival says little about how soon streaming starts.
        """
        if not self.workers:
            yield from dataset
            return
        with _batches(self.loader(dataset)) as batches:
            for batch in batches:
                yield from rows(batch)

    def close(self) -> None:
        """Stop everything the datasets built still run, so the cache directory can be removed safely.

        After a normal run nothing is left. After Ctrl-C or an error, DataLoader workers may still be
        blocked waiting for a shard: torch would join each for up to 5 s before terminating it, and
        meanwhile they retry downloads against a proxy that is going away. They are our children and
        hold nothing worth saving (the cache is deleted next), so they are terminated at once.
        """
        for child in multiprocessing.active_children():
            child.terminate()
        for child in multiprocessing.active_children():
            child.join(5)
        for ds in self._made:
            # Stop in-process downloads: they would keep writing .part files into the cache we delete next.
            with contextlib.suppress(Exception):
                ds.close()
        self._made.clear()


@contextlib.contextmanager
def _batches(loader: Any) -> Iterator[Iterator[Mapping[str, list[Any]]]]:
    """Iterate ``loader``, closing the iterator (and shutting down its workers) however the loop ends."""
    it = iter(loader)
    try:
        yield it
    finally:
        it.close()


@dataclass
class EpochRun:
    """One measured epoch.

    Attributes:
        samples: Samples yielded (all checked).
        first_sample: Seconds from the start to the first sample.
        seconds: Seconds from the start to the last sample.
        order: The ids in the order they came.
    """

    samples: int
    first_sample: float
    seconds: float
    order: list[int]


def run_epoch(
    samples: Generator[Mapping[str, Any], None, None], checker: SampleChecker, start: float | None = None
) -> EpochRun:
    """Iterate one full epoch, checking every sample.

    Args:
        samples: The epoch's samples (:meth:`DatasetFactory.samples`).
        checker: Checks the samples; must be fresh for this epoch.
        start: ``time.perf_counter()`` at which the epoch is deemed to start (default: now), e.g. before
            the dataset was built, so the index download counts toward the time to first sample.

    Raises:
        DemoCheckError: A sample was wrong, repeated or missing.
    """
    start = time.perf_counter() if start is None else start
    first: float | None = None
    count = 0
    with contextlib.closing(samples) as it:
        for sample in it:
            if first is None:
                first = time.perf_counter() - start
            checker.check(sample)
            count += 1
    seconds = time.perf_counter() - start
    checker.finish()
    return EpochRun(count, first if first is not None else seconds, seconds, checker.order)


@dataclass
class ResumeRun:
    """The resume check: stop after ``batches`` batches, checkpoint, resume in a new dataset.

    Attributes:
        batches: Batches taken before the checkpoint.
        head_samples: Samples in those batches.
        checkpoint: The loader's ``state_dict()``.
        resumed_samples: Samples the resumed dataset yielded.
        seconds: Time to build the resumed dataset and get its first batch.
    """

    batches: int
    head_samples: int
    checkpoint: dict[str, Any]
    resumed_samples: int
    seconds: float


def _take(loader: Any, batches: int, checker: SampleChecker) -> dict[str, Any]:
    with _batches(loader) as it:
        for _ in range(batches):
            checker.check_all(rows(next(it)))
        state: dict[str, Any] | None = loader.state_dict()
    assert state is not None  # the loader wraps a StreamingDataset
    return state


def _diff(got: list[int], expected: list[int], what: str) -> None:
    if got == expected:
        return
    where = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    if where is None:
        raise DemoCheckError(f"{what}: {len(got)} samples, expected {len(expected)}")
    raise DemoCheckError(f"{what}: sample {where} is id {got[where]}, expected id {expected[where]}")


def run_resume(
    factory: DatasetFactory, order: list[int], batches: int, samples: int, sample_bytes: int
) -> ResumeRun:
    """Stop after ``batches`` batches, checkpoint, resume in a brand-new dataset and compare.

    The first part must equal the head of ``order`` (the epoch seen before, same seed and epoch) and the
    resumed part its tail, exactly, sample by sample.

    Raises:
        DemoCheckError: Either part differs from ``order`` (the first differing position is named).
    """
    head = SampleChecker(samples, sample_bytes)
    checkpoint = _take(factory.loader(factory.dataset()), batches, head)
    _diff(head.order, order[: len(head.order)], "before the checkpoint")

    start = time.perf_counter()
    resumed = factory.dataset()
    loader = factory.loader(resumed)
    loader.load_state_dict(checkpoint)
    tail = SampleChecker(samples, sample_bytes)
    first: float | None = None
    with _batches(loader) as it:
        for batch in it:
            if first is None:
                first = time.perf_counter() - start
            tail.check_all(rows(batch))
    _diff(tail.order, order[len(head.order) :], "after resuming")
    return ResumeRun(batches, len(head.order), checkpoint, len(tail.order), first or 0.0)
