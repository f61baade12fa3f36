"""Check one shard of a dataset against its index entry: fetch, size, every hash, decompress, decode.

Used by ``astreaming verify``. Every problem found is reported (not raised), so one run names every bad
shard. Files are downloaded into a private directory per shard and deleted once the shard is checked,
so the disk holds at most the shards being checked at once.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from astreaming.errors import AstreamingError, ObjectNotFound, StorageError
from astreaming.format.compression import get_compression
from astreaming.format.hashing import hash_file
from astreaming.format.index import FileInfo, ShardEntry
from astreaming.format.paths import join_basename
from astreaming.format.reader import open_shard
from astreaming.storage import Backend, RetryPolicy, join, redact, with_retries

__all__ = ["ShardReport", "check_shard"]


@dataclass
class ShardReport:
    """The outcome of checking one shard.

    Attributes:
        position: The shard's position in the index.
        basename: Its (raw) file name.
        samples: Samples the index lists for it.
        fetched_bytes: Bytes downloaded.
        problems: What is wrong; empty for a good shard.
        decoded: Samples decoded.
    """

    position: int
    basename: str
    samples: int
    fetched_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    decoded: int = 0

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


def _check_digests(path: Path, info: FileInfo, report: ShardReport) -> bool:
    good = True
    for algo, expected in sorted(info.hashes.items()):
        actual = hash_file(algo, path)
        if actual != expected.lower():
            report.problems.append(
                f"{info.basename}: {algo} digest {actual} does not match the index ({expected})"
            )
            good = False
    return good


async def _fetch(
    backend: Backend, root: str, info: FileInfo, workdir: Path, policy: RetryPolicy, report: ShardReport
) -> Path | None:
    url = join(root, info.basename)
    dest = join_basename(workdir, info.basename)
    try:
        await with_retries(policy, lambda: backend.download(url, dest), url=url, what="download")
    except ObjectNotFound:
        report.problems.append(f"{info.basename}: missing ({redact(url)} not found)")
        return None
    except StorageError as e:
        report.problems.append(f"{info.basename}: download failed: {e}")
        return None
    size = dest.stat().st_size
    report.fetched_bytes += size
    if size != info.bytes:
        report.problems.append(f"{info.basename}: {size:,} bytes, the index says {info.bytes:,}")
        return None
    return dest


def _unpack(entry: ShardEntry, raw: FileInfo, packed: Path, workdir: Path, report: ShardReport) -> bool:
    """Decompress ``packed`` into the raw file and check the raw file's digests."""
    codec = get_compression(entry.compression)
    assert codec is not None  # parse_shard guarantees it when zip_data is listed
    try:
        data = codec.decompress(packed.read_bytes(), expected_size=raw.bytes, name=packed.name)
    except AstreamingError as e:
        report.problems.append(f"{packed.name}: does not decompress: {e}")
        return False
    dest = join_basename(workdir, raw.basename)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    packed.unlink()
    return _check_digests(dest, raw, report)


def _decode(workdir: Path, entry: ShardEntry, report: ShardReport, *, every: bool) -> None:
    try:
        reader = open_shard(workdir, entry, allow_unsafe_types=True)
    except AstreamingError as e:
        report.problems.append(f"cannot open: {e}")
        return
    try:
        n = reader.samples
        picks = range(n) if every else sorted({0, n - 1}) if n else []
        for i in picks:
            reader[i]
            report.decoded += 1
    except Exception as e:  # a corrupt value surfaces as whatever its decoder raises
        report.problems.append(f"sample {report.decoded} does not decode: {e}")
    finally:
        reader.close()


def _check_local(
    entry: ShardEntry, paths: dict[str, Path], workdir: Path, report: ShardReport, every: bool
) -> None:
    """The CPU part (digests, decompression, decoding), run in a worker thread."""
    intact = True
    for raw, zipped in entry.file_pairs():
        fetched = zipped or raw
        path = paths.get(fetched.basename)
        if path is None:
            intact = False
            continue
        if not _check_digests(path, fetched, report):
            intact = False
            continue
        if zipped is not None and not _unpack(entry, raw, path, workdir, report):
            intact = False
    if intact:
        _decode(workdir, entry, report, every=every)


async def check_shard(
    backend: Backend,
    root: str,
    position: int,
    entry: ShardEntry,
    workdir: Path,
    policy: RetryPolicy,
    *,
    decode_all: bool = False,
) -> ShardReport:
    """Check shard ``position`` (``entry``) of the dataset at ``root``; ``workdir`` is deleted after."""
    report = ShardReport(position, entry.raw_data.basename, entry.samples)
    try:
        paths: dict[str, Path] = {}
        for info in entry.fetch_files():
            path = await _fetch(backend, root, info, workdir, policy, report)
            if path is not None:
                paths[info.basename] = path
        await asyncio.to_thread(_check_local, entry, paths, workdir, report, decode_all)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return report
