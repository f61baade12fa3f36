"""Make one shard readable in the local cache: download, verify, decompress, publish by rename.

Runs on the loop thread. Every file goes through :func:`astreaming.cache.publish.ensure_file`, so
processes sharing ``local`` never see a half-written file and a crash costs only a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from astreaming.cache.publish import ensure_file
from astreaming.crashpoints import crash_point
from astreaming.diskerrors import mapped_disk_errors
from astreaming.engine.shards import ShardFile, ShardTable
from astreaming.engine.versioncheck import pin_for, settle_whole
from astreaming.errors import ConfigError, FormatError, ObjectNotFound
from astreaming.fetch.scheduler import FetchDeferred
from astreaming.format.compression import get_compression
from astreaming.format.hashing import verify_hash
from astreaming.format.index import FileInfo
from astreaming.storage import versions
from astreaming.storage.base import Backend
from astreaming.storage.linkgauge import LinkGauge
from astreaming.storage.partfile import settle
from astreaming.storage.ranged import RangedDownloader
from astreaming.storage.retry import RetryPolicy, RetryStats, WrongLength, with_retries
from astreaming.storage.urls import join, redact

if TYPE_CHECKING:
    from astreaming.cache.budget import NodeBudget

__all__ = ["FetchCounters", "ShardFetcher"]


class _NeedsRoom(Exception):
    """The shard must be produced after all (it was evicted, or its producer failed): reserve first."""


def _check_room(may_produce: bool, shard: int) -> None:
    # Called by a producer once it holds the publish lock and the file is still missing.
    if not may_produce:
        raise _NeedsRoom(shard)


@dataclass
class FetchCounters:
    """What the fetcher did, for ``StreamingDataset.stats()``."""

    bytes_downloaded: int = 0
    files_downloaded: int = 0
    shards_fetched: int = 0
    shards_already_local: int = 0
    decompressed: int = 0
    #: Downloads of a shard this process already had during the same plan (an epoch): it was evicted.
    refetches: int = 0


class ShardFetcher:
    """Prepares shards of a :class:`ShardTable` with one backend and retry policy per stream.

    Args:
        table: The dataset's shards.
        backends: Open backend per stream id; streams without a remote are absent.
        policies: Retry policy per stream id.
        retry_stats: Shared retry counters.
        budget: The node-wide ``cache_limit`` budget, if any.
        distance: Plan positions until the consumer needs a shard (0: now), from the scheduler.
        gauge: Counts the link's requests in flight (shared with whoever schedules downloads).
    """

    def __init__(
        self,
        table: ShardTable,
        backends: Mapping[int, Backend],
        policies: Mapping[int, RetryPolicy],
        retry_stats: RetryStats,
        *,
        budget: NodeBudget | None = None,
        distance: Callable[[int], float] = lambda shard: 0.0,
        gauge: LinkGauge | None = None,
    ) -> None:
        self.budget = budget
        self.distance = distance
        self.table = table
        self.backends = backends
        self.policies = policies
        self.retry_stats = retry_stats
        self.counters = FetchCounters()
        #: Large shards are downloaded as parallel byte ranges (sized from the throughput measured).
        self.ranged = RangedDownloader(gauge=gauge)
        # Shards this process had in the cache (downloaded or found) since its plan started: one
        # downloaded again meanwhile is a refetch.
        self._seen: set[int] = set()

    def new_plan(self) -> None:
        """A new plan (epoch) starts: downloading a shard again from now on is not a refetch."""
        self._seen.clear()

    async def fetch(self, shard: int) -> int:
        """Make every raw file of ``shard`` present; returns the bytes downloaded for it.

        Raises:
            FetchDeferred: a look-ahead shard that does not fit under ``cache_limit`` without evicting
                shards needed sooner (the scheduler retries it later).
        """
        budget = self.budget
        if budget is None or budget.keys[shard] is None:
            return (await self._fetch(shard))[0]
        downloaded, produced = await self._fetch_within(budget, shard)
        if produced and shard in self._seen:
            self.counters.refetches += 1  # evicted since this plan first had it: the limit is thrashing
        self._seen.add(shard)
        return downloaded

    async def _fetch_within(self, budget: NodeBudget, shard: int) -> tuple[int, bool]:
        """:meth:`fetch` under ``cache_limit``: (bytes downloaded, whether this process produced it)."""
        while True:
            if self.table.is_local(shard):
                # Published by any process sharing the cache: it counts against the limit too.
                await budget.run(budget.note_present, shard)
                with contextlib.suppress(_NeedsRoom):  # evicted again meanwhile: reserve and download
                    return await self._fetch(shard, may_download=False)
                continue
            # Room for the peak footprint (zip and raw both exist while decompressing), evicting the
            # shards needed furthest in the future; then the real size once the files are published.
            granted = await budget.reserve(shard, self.table.max_bytes(shard), distance=self.distance(shard))
            if granted is None:
                raise FetchDeferred(shard)
            try:
                # With nothing reserved (another process had it or was bringing it in) this process may
                # wait for that publish but must not download: that would be bytes outside the budget.
                downloaded, produced = await self._fetch(shard, may_download=granted > 0)
            except _NeedsRoom:
                budget.submit(budget.release, shard)
                continue
            except BaseException:
                budget.submit(budget.release, shard)  # in order after the reservation, even if cancelled
                raise
            crash_point("fetch.before_commit")
            if produced:
                await budget.run(budget.commit, shard, self.table.local_bytes(shard))
            else:
                # Another process published it: its producer records the size once the zip it
                # decompressed is gone. Sizing it here could catch the zip still on disk and, recorded
                # after that producer's row, leave the row counting a deleted file.
                budget.submit(budget.release, shard)
                await budget.run(budget.note_present, shard)
            return downloaded, produced

    async def _fetch(self, shard: int, *, may_download: bool = True) -> tuple[int, bool]:
        """Bring the shard's raw files into the cache: (bytes downloaded, whether this call produced any
        file; False when all were present, e.g. published by another process)."""
        before = self.counters.bytes_downloaded
        produced = False
        for file in self.table.files(shard):
            with mapped_disk_errors(file.raw_path):  # disk full, read-only cache: CacheError naming it
                produced |= await self._ensure_raw(shard, file, may_download)
        if produced:
            self.counters.shards_fetched += 1
        else:
            self.counters.shards_already_local += 1
        return self.counters.bytes_downloaded - before, produced

    async def _ensure_raw(self, shard: int, file: ShardFile, may_download: bool) -> bool:
        if file.raw_path.exists():
            return False
        stream_id = int(self.table.stream_per_shard[shard])
        options = self.table.streams[stream_id].options
        if file.zip is None or file.zip_path is None:

            async def download_raw(tmp: Path) -> None:
                _check_room(may_download, shard)
                await self._download(stream_id, file.raw, tmp)
                self._verify(options.validate_hash, file.raw, tmp)

            return await ensure_file(file.raw_path, download_raw)

        zip_info, zip_path = file.zip, file.zip_path
        compression = get_compression(self.table.entries[shard].compression)
        if compression is None:
            raise FormatError(f"{zip_path}: index lists a compressed file but no compression")

        async def decompress(tmp: Path) -> None:
            _check_room(may_download, shard)
            if not await self._ensure_zip(stream_id, zip_info, zip_path):
                # Not downloaded just now (a local-only dataset, a kept zip): verify before trusting it.
                self._verify(options.validate_hash, zip_info, zip_path)
            crash_point("decompress.zip_ready")
            # Waited for to its end even when cancelled: a thread still writing tmp after the cleanup
            # of ensure_file would leave a stray temp file in the cache.
            work = asyncio.to_thread(compression.decompress_file, zip_path, tmp, expected_size=file.raw.bytes)
            await settle(asyncio.ensure_future(work))
            self.counters.decompressed += 1

        produced = await ensure_file(file.raw_path, decompress)
        if produced and not options.keep_zip:
            # The zip was only a vehicle; the raw file is what readers map.
            with contextlib.suppress(FileNotFoundError):
                zip_path.unlink()
        return produced

    async def _ensure_zip(self, stream_id: int, info: FileInfo, path: Path) -> bool:
        options = self.table.streams[stream_id].options

        async def download_zip(tmp: Path) -> None:
            await self._download(stream_id, info, tmp)
            self._verify(options.validate_hash, info, tmp)

        return await ensure_file(path, download_zip)

    async def _download(self, stream_id: int, info: FileInfo, tmp: Path) -> None:
        stream = self.table.streams[stream_id].stream
        backend = self.backends.get(stream_id)
        root = stream.remote_root
        if backend is None or root is None:
            raise ObjectNotFound(
                f"{self.table.caches[stream_id].root / info.basename}: shard file missing from the local "
                "directory of a stream without a remote",
                url=str(self.table.caches[stream_id].root / info.basename),
            )
        url = join(root, info.basename)  # keeps a SAS / presigned query at the end
        policy = self.policies[stream_id]
        ranged = self.ranged
        # Every answer (each part, each retry) must carry the version of the first answer: never a shard
        # of two versions. That version must be the one this cache read the file at before, if it did
        # (an eviction since), or hold the same bytes (an opaque token changes when the same bytes are
        # uploaded again): a file replaced meanwhile by other bytes is an ObjectChanged.
        pins = self.table.pins[stream_id]
        recorded = pins.entry(info.basename)
        with versions.pinned(pin_for(recorded)) as pin:
            if not backend.is_local_filesystem and ranged.splits(info.bytes):
                size = await ranged.download(
                    backend, url, info.bytes, tmp, policy=policy, stats=self.retry_stats
                )
            else:
                size = await with_retries(
                    policy,
                    lambda: self._whole(backend, url, tmp, info.bytes),
                    url=url,
                    stats=self.retry_stats,
                    what="download",
                )
        await settle_whole(pins, info.basename, recorded, pin, tmp, redact(url))
        self.counters.bytes_downloaded += size
        self.counters.files_downloaded += 1

    async def _whole(self, backend: Backend, url: str, tmp: Path, expected: int) -> int:
        """One attempt at a whole download of ``expected`` bytes, counted by the link gauge (it holds a
        connection too)."""
        ranged = self.ranged
        if backend.is_local_filesystem:  # a copy: not the link
            size = await backend.download(url, tmp)
            self._check_whole(url, tmp, size, expected)
            return size
        request = ranged.gauge.begin()
        size = 0
        try:
            with ranged.gauge.receiving(request):
                size = await backend.download(url, tmp)
        finally:
            ranged.gauge.end(request, size)
        self._check_whole(url, tmp, size, expected)
        if size >= ranged.min_part:  # large enough to say what one connection gets
            ranged.observe(size, request.body_seconds(time.monotonic()))
        return size

    @staticmethod
    def _check_whole(url: str, tmp: Path, size: int, expected: int) -> None:
        if size != expected:
            # Retried (a hop may cut a body and lower its Content-Length); on the last attempt
            # with_retries makes it a FormatError: the object differs from the index.
            tmp.unlink(missing_ok=True)
            raise WrongLength(
                f"{redact(url)}: downloaded {size} bytes but the index says {expected}", url=redact(url)
            )

    @staticmethod
    def _verify(algo: str | None, info: FileInfo, path: Path) -> None:
        if algo is None:
            return
        expected = info.hashes.get(algo)
        if expected is None:
            raise ConfigError(
                f"validate_hash={algo!r}, but the index records only {sorted(info.hashes)} for "
                f"{info.basename}"
            )
        verify_hash(algo, expected, path=path, name=info.basename)
        crash_point("verify.matched")
