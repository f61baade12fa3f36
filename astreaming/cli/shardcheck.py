"""Check one shard of a dataset against its index entry, streaming: sizes, hashes, decompression, decoding.

Used by ``astreaming verify``; runs in a worker thread and reads through :class:`BlockingRemote`. Every
problem found is reported (not raised), so one run names every bad shard.

- Every file the index lists is stat'ed first: a missing file or a size other than the index's is
  reported without reading its body.
- Full check: each file is read front to back by range requests (:class:`RangeStream`), hashed as it
  passes, decompressed as it passes (raw size and raw hashes checked too), and its samples are decoded
  as they stream by (the first and last, or all). Nothing is written to disk; a check holds two read
  chunks, the decompressor's window and one sample.
- Quick check (``quick``): no hash. An uncompressed shard is sampled by range requests (its offsets
  table, then its first and last samples); a compressed one is decompressed only up to its first sample.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from astreaming.cli.remote import BlockingRemote, RangeStream, Stopped
from astreaming.errors import AstreamingError, ConfigError, FormatError, ObjectNotFound, StorageError
from astreaming.format.compression import get_compression
from astreaming.format.hashing import new_hasher
from astreaming.format.index import FileInfo, JSONEntry, MDSEntry, ShardEntry, XSVEntry
from astreaming.format.jsonl import JSONReader
from astreaming.format.mds.reader import MDSReader, mds_header_size, parse_mds_header
from astreaming.format.meta import build_meta, parse_meta
from astreaming.format.xsv import XSVReader, header_line
from astreaming.storage import join, redact

__all__ = ["CheckSettings", "ShardReport", "check_shard"]

_BUFFER = 1 << 16
#: Range size of a quick check's reads of a compressed file (its header and first sample).
QUICK_CHUNK = 256 << 10


@dataclass(frozen=True)
class CheckSettings:
    """How deeply to check: ``quick`` (sizes + sampled decoding), ``decode_all``, the read ``chunk``."""

    quick: bool = False
    decode_all: bool = False
    chunk: int = 8 << 20
    allow_unsafe_types: bool = False


@dataclass
class ShardReport:
    """The outcome of checking one shard.

    Attributes:
        position: The shard's position in the index.
        basename: Its (raw) file name.
        samples: Samples the index lists for it.
        problems: What is wrong; empty for a good shard.
        decoded: Samples decoded.
        skipped: Why samples were not decoded, when they were not (a ``pkl`` column).
    """

    position: int
    basename: str
    samples: int
    problems: list[str] = field(default_factory=list)
    decoded: int = 0
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


class _Corrupt(Exception):
    """The compressed stream does not decompress (carries the codec's message)."""


class _Tap(io.RawIOBase):
    """Bytes read through ``inner`` are hashed and counted; past ``limit`` is an error (``_Corrupt``)."""

    def __init__(
        self, inner: BinaryIO, algos: Iterable[str], *, limit: int | None = None, codec: bool = False
    ) -> None:
        super().__init__()
        self.inner = inner
        self.hashers = {algo: new_hasher(algo) for algo in algos}
        self.count = 0
        self.limit = limit
        self.codec = codec  # inner is a decompressor: its own errors mean corrupt input

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer) if self.limit is None else min(len(buffer), self.limit - self.count + 1)
        try:
            data = self.inner.read(max(want, 1))
        except (StorageError, Stopped):
            raise
        except Exception as e:
            if not self.codec:
                raise
            raise _Corrupt(f"{type(e).__name__}: {e}") from None
        n = len(data)
        self.count += n
        if self.limit is not None and self.count > self.limit:
            raise _Corrupt(f"decompresses to more than the {self.limit:,} bytes the index records")
        buffer[:n] = data
        for hasher in self.hashers.values():
            hasher.update(data)
        return n

    def drain(self) -> None:
        """Read to the end (the rest is hashed and counted)."""
        while self.read(_BUFFER):
            pass

    def mismatches(self, info: FileInfo) -> list[str]:
        """A problem per digest that differs from the index's."""
        out = []
        for algo, hasher in sorted(self.hashers.items()):
            actual, expected = hasher.hexdigest(), info.hashes[algo]
            if actual != expected.lower():
                out.append(f"{info.basename}: {algo} digest {actual} does not match the index ({expected})")
        return out


class _Sequential:
    """``read_at`` over a forward-only stream: skipped bytes are read (and so hashed), never sought."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.pos = 0

    def read_at(self, start: int, end: int) -> bytes:
        if start < self.pos:
            raise AssertionError(f"backwards read in {self.name}")  # the walks only go forward
        while self.pos < start:
            skipped = self.stream.read(min(_BUFFER, start - self.pos))
            if not skipped:
                break
            self.pos += len(skipped)
        data = self.stream.read(end - start) if self.pos == start else b""
        self.pos += len(data)
        if len(data) != end - start:
            raise FormatError(f"{self.name}: ends at byte {self.pos:,}, before byte {end:,}")
        return data


Reader = Callable[[int, int], bytes]


class _Checker:
    """The check of one shard (see the module docstring); :meth:`run` fills ``report``."""

    def __init__(
        self,
        remote: BlockingRemote,
        root: str,
        entry: ShardEntry,
        report: ShardReport,
        settings: CheckSettings,
    ) -> None:
        self.remote = remote
        self.root = root
        self.entry = entry
        self.report = report
        self.settings = settings
        self.codec = get_compression(entry.compression)

    def url(self, info: FileInfo) -> str:
        return join(self.root, info.basename)

    def run(self) -> None:
        if not self._sizes_match():
            return
        pairs = self.entry.file_pairs()
        if isinstance(self.entry, MDSEntry):
            self._file(*pairs[0], walk=self._walk_mds)
            return
        meta: list[bytes] = []
        self._file(*pairs[1], walk=lambda read: meta.append(read(0, pairs[1][0].bytes)))
        if meta:
            self._file(*pairs[0], walk=lambda read: self._walk_lines(read, meta[0]))

    def _sizes_match(self) -> bool:
        good = True
        for info in self.entry.fetch_files():
            url = self.url(info)
            try:
                size = self.remote.stat(url).size
            except ObjectNotFound:
                self.report.problems.append(f"{info.basename}: missing ({redact(url)} not found)")
                good = False
                continue
            except StorageError as e:
                self.report.problems.append(f"{info.basename}: cannot stat: {e}")
                good = False
                continue
            if size != info.bytes:
                self.report.problems.append(f"{info.basename}: {size:,} bytes, the index says {info.bytes:,}")
                good = False
        return good

    def _file(self, raw: FileInfo, zipped: FileInfo | None, *, walk: Callable[[Reader], None]) -> None:
        """Read one file of the shard (raw, or compressed into raw) and walk its samples."""
        fetched = zipped or raw
        url = self.url(fetched)
        quick = self.settings.quick
        if quick and zipped is None:
            self._walk(walk, lambda start, end: self.remote.read(url, start, end))
            return
        hashes = () if quick else fetched.hashes
        # Quick: a compressed file is read only as far as its first sample, so ask in small steps.
        chunk = min(self.settings.chunk, QUICK_CHUNK) if quick else self.settings.chunk
        stream = RangeStream(self.remote, url, fetched.bytes, chunk)
        outer = _Tap(cast(BinaryIO, stream), hashes)
        inner = outer
        try:
            if zipped is not None:
                assert self.codec is not None  # parse_shard guarantees it when a zip file is listed
                decoder: BinaryIO | None = self.codec.stream_reader(io.BufferedReader(outer, _BUFFER))
                if decoder is None:  # snappy: one block, decompressed whole
                    decoder = io.BytesIO(self._unsnappy(outer, raw, zipped))
                inner = _Tap(decoder, () if quick else raw.hashes, limit=raw.bytes, codec=True)
            self._walk(walk, _Sequential(io.BufferedReader(inner, _BUFFER), fetched.basename).read_at)
            if quick:
                return
            inner.drain()
            outer.drain()
        except _Corrupt as e:
            self.report.problems.append(f"{fetched.basename}: does not decompress: {e}")
            return
        except StorageError as e:
            self.report.problems.append(f"{fetched.basename}: read failed: {e}")
            return
        finally:
            stream.close()
        if zipped is not None and inner.count != raw.bytes:
            self.report.problems.append(
                f"{fetched.basename}: decompresses to {inner.count:,} bytes, the index says {raw.bytes:,}"
            )
        self.report.problems += outer.mismatches(fetched)
        if inner is not outer:
            self.report.problems += inner.mismatches(raw)

    def _unsnappy(self, outer: _Tap, raw: FileInfo, zipped: FileInfo) -> bytes:
        assert self.codec is not None
        try:
            return self.codec.decompress(outer.read(), expected_size=raw.bytes, name=zipped.basename)
        except FormatError as e:
            raise _Corrupt(str(e)) from None

    def _walk(self, walk: Callable[[Reader], None], read: Reader) -> None:
        """Run a walk; a format problem is reported, and the caller still reads the file to its end."""
        try:
            walk(read)
        except FormatError as e:
            self.report.problems.append(f"cannot open: {e}")

    def _picks(self, samples: int, compressed: bool) -> list[int]:
        if self.settings.decode_all and not self.settings.quick:
            return list(range(samples))
        if self.settings.quick and compressed:
            return [0] if samples else []  # the last sample would cost the whole file
        return sorted({0, samples - 1}) if samples else []

    def _decode(
        self, picks: list[int], offsets: Any, read: Reader, decode: Callable[[bytes], object]
    ) -> None:
        for i in picks:
            blob = read(int(offsets[i]), int(offsets[i + 1]))
            try:
                decode(blob)
            except (StorageError, Stopped, _Corrupt):
                raise
            except Exception as e:  # a corrupt value surfaces as whatever its decoder raises
                self.report.problems.append(f"sample {i} does not decode: {e}")
                return
            self.report.decoded += 1

    def _walk_mds(self, read: Reader) -> None:
        entry = self.entry
        assert isinstance(entry, MDSEntry)
        source = entry.raw_data.basename
        head = read(0, 4)
        rest = read(4, mds_header_size(head, source=source))
        try:
            plan = MDSReader.plan(entry, source=source, allow_unsafe_types=self.settings.allow_unsafe_types)
        except ConfigError as e:  # a pkl column: unpickling runs code from the dataset
            self.report.skipped = str(e)
            plan = None
        offsets = parse_mds_header(
            head + rest,
            source=source,
            file_size=entry.raw_data.bytes,
            samples=entry.samples,
            min_sample_size=0 if plan is None else plan.min_size,
        )
        if plan is not None:
            decode = plan.decode
            picks = self._picks(entry.samples, entry.zip_data is not None)
            self._decode(picks, offsets, read, lambda blob: decode(blob, 0, len(blob)))

    def _walk_lines(self, read: Reader, meta: bytes) -> None:
        entry = self.entry
        source = entry.raw_data.basename
        header = b""
        if isinstance(entry, XSVEntry):
            header = header_line(entry.column_names, entry.separator, entry.newline)
            if read(0, len(header)) != header:
                raise FormatError(f"{source}: header line does not match the index columns")
        offsets = parse_meta(
            meta,
            source=f"{source}.meta",
            samples=entry.samples,
            first=len(header),
            data_size=entry.raw_data.bytes,
        )
        one = dataclasses.replace(entry, samples=1)

        def decode(blob: bytes) -> object:
            # The reader of a one-sample shard: the same checks as on the whole shard.
            if isinstance(one, JSONEntry):
                return JSONReader(blob, build_meta(0, [len(blob)], b""), one, source=source).get_item(0)
            assert isinstance(one, XSVEntry)
            data = header + blob
            return XSVReader(data, build_meta(len(header), [len(blob)], b""), one, source=source).get_item(0)

        self._decode(self._picks(entry.samples, entry.zip_data is not None), offsets, read, decode)


def check_shard(
    remote: BlockingRemote, root: str, position: int, entry: ShardEntry, settings: CheckSettings
) -> ShardReport:
    """Check shard ``position`` (``entry``) of the dataset at ``root`` (blocking: run it in a thread).

    Raises:
        Stopped: The run is being stopped.
    """
    report = ShardReport(position, entry.raw_data.basename, entry.samples)
    try:
        _Checker(remote, root, entry, report, settings).run()
    except AstreamingError as e:
        if isinstance(e, Stopped):
            raise
        report.problems.append(f"cannot check: {e}")
    return report
