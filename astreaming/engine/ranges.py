"""Random access by byte ranges: a few samples of an uncompressed remote MDS shard, without the shard.

``ds[i]`` on a shard that is not cached would otherwise download the whole shard (64 MB by default)
for one sample. For an uncompressed MDS shard the offsets table and the sample are enough: two range
reads the first time a shard is touched, one afterwards. Shards that are compressed, or whose hash
must be verified (``validate_hash``), are downloaded whole as before, and so is a shard once it was
sampled ``WHOLE_AFTER`` times (a map-style pass over the data is cheaper with one download per shard).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.cache.versionpins import PinEntry
from astreaming.engine.runtime import Runtime
from astreaming.engine.shards import ShardTable
from astreaming.format.index import MDSEntry
from astreaming.format.mds.reader import DecodePlan, MDSReader, parse_mds_header
from astreaming.storage import versions
from astreaming.storage.retry import with_retries
from astreaming.storage.urls import join, redact
from astreaming.storage.versions import VersionPin

__all__ = ["RangeSampler"]

#: Range-read samples of one shard after which it is downloaded whole instead.
WHOLE_AFTER = 8


class RangeSampler:
    """Reads single samples of remote, uncompressed MDS shards with range requests."""

    def __init__(self, table: ShardTable, *, allow_unsafe_types: bool) -> None:
        self.table = table
        self.allow_unsafe_types = allow_unsafe_types
        self._offsets: dict[int, npt.NDArray[np.uint32]] = {}
        self._plans: dict[int, DecodePlan] = {}
        self._reads: dict[int, int] = {}
        self._pins: dict[int, VersionPin] = {}  # the version each shard is read at
        self.bytes_read = 0  # counted in the dataset's stats() as downloaded bytes
        self.range_reads = 0

    def eligible(self, shard: int) -> bool:
        """Whether ``shard`` can be sampled by ranges (remote, MDS, uncompressed, no hash to verify)."""
        entry = self.table.entries[shard]
        stream = self.table.stream_of(shard)
        return (
            self._reads.get(shard, 0) < WHOLE_AFTER
            and isinstance(entry, MDSEntry)
            and entry.zip_data is None
            and stream.stream.remote_root is not None
            and stream.options.validate_hash is None
        )

    async def sample(self, runtime: Runtime, shard: int, index: int) -> dict[str, Any]:
        """Sample ``index`` of ``shard``, read from the remote by byte ranges."""
        entry = self.table.entries[shard]
        assert isinstance(entry, MDSEntry)
        stream_id = int(self.table.stream_per_shard[shard])
        root = self.table.streams[stream_id].stream.remote_root
        assert root is not None
        url = join(root, entry.raw_data.basename)
        backend, policy = runtime.backend(stream_id)
        # The offsets read first and every sample read later must come from one version of the shard,
        # the one this cache holds or held (a sample cut at another version's offsets is garbage).
        pins = self.table.pins[stream_id]
        pin = self._pins.get(shard)
        if pin is None:
            # Strict: a few bytes cannot show that a new token holds the same bytes (module docstring
            # of astreaming.storage.versions), so any other version is an ObjectChanged here.
            pin = self._pins[shard] = VersionPin(pins.get(entry.raw_data.basename))

        async def read(start: int, end: int) -> bytes:
            recorded = pin.token
            with versions.pinned(pin):
                data = await with_retries(
                    policy,
                    lambda: backend.read_range(url, start, end),
                    url=url,
                    stats=runtime.retry_stats,
                    what="read",
                )
            if recorded is None and pin.token is not None:
                digest = f"md5:{pin.md5}" if pin.md5 else None
                first = pins.record(entry.raw_data.basename, PinEntry(pin.token, pin.content, digest))
                if first is not None and first.token != pin.token:
                    raise versions.changed(redact(url), first.token, pin.token)
            self.bytes_read += len(data)
            self.range_reads += 1
            return data

        offsets = self._offsets.get(shard)
        if offsets is None:
            header = await read(0, 4 + 4 * (entry.samples + 1))
            offsets = parse_mds_header(
                header, source=url, file_size=entry.raw_data.bytes, samples=entry.samples
            )
            self._offsets[shard] = offsets
        plan = self._plans.get(shard)
        if plan is None:
            plan = MDSReader.plan(entry, source=url, allow_unsafe_types=self.allow_unsafe_types)
            self._plans[shard] = plan
        self._reads[shard] = self._reads.get(shard, 0) + 1
        begin, end = int(offsets[index]), int(offsets[index + 1])
        blob = await read(begin, end)
        return plan.decode(blob, 0, len(blob))
