"""Shared machinery of the dataset writers: arguments, size accounting, shard files, index publishing.

Subclasses (MDS, JSON, XSV) say how a sample is encoded and how a finished shard is laid out; this
module decides when a shard is flushed (reference §1.8, exactly as mosaic, including a 0-sample first
shard when the first sample does not fit), writes each file raw or compressed (only the compressed file
stays on disk, but the raw name, size and hashes are recorded), and publishes ``index.json`` through a
temporary file and a rename.

Unlike mosaic, leaving a ``with`` block by an exception does NOT publish an index (hazard 29): the shards
written so far stay on disk, but no valid-looking partial dataset is created.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

from astreaming._units import bytes_to_int
from astreaming.errors import ConfigError, FormatError
from astreaming.format.compression import Compression, get_compression
from astreaming.format.hashing import hash_bytes, validate_hashes
from astreaming.format.index import FileInfo, ShardEntry, dump_index, write_text_atomic
from astreaming.format.outdir import (
    OutputClaim,
    OutputExistsError,
    OutputInUseError,
    check_output,
    claim_output,
)

__all__ = [
    "MissingColumnError",
    "check_local_out",
    "OutputExistsError",
    "OutputInUseError",
    "ShardWriter",
    "Uploader",
    "is_remote_out",
    "prepare_local_out",
]

DEFAULT_SIZE_LIMIT = 1 << 26
_W = TypeVar("_W", bound="ShardWriter")
_OPTIONS = ("progress_bar", "max_workers", "retry", "exist_ok")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class MissingColumnError(FormatError, KeyError):
    """A sample lacks a column the writer was configured with (mosaic raised KeyError)."""

    def __str__(self) -> str:
        # KeyError.__str__ repr()s its argument; keep the plain message.
        return str(self.args[0]) if self.args else ""


class Uploader(Protocol):
    """Where finished files go besides the local directory (``astreaming.output`` provides one).

    ``upload`` is called with each finished shard file (and last with index.json); ``finish`` waits for
    every upload and raises the first failure; ``abort`` is called instead of ``finish`` when the
    writer is abandoned.
    """

    def upload(self, path: Path, basename: str) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None:
        """The writer is abandoned (the ``with`` body raised): stop uploading, publish nothing."""


class ShardWriter(ABC):
    """Base of MDSWriter, JSONWriter and XSVWriter.

    Args:
        out: the output directory. Remote URLs and ``(local, remote)`` tuples are accepted by the
            uploading subclasses in :mod:`astreaming.output` (exported by ``astreaming``); here they
            raise ConfigError.
        keep_local: keep local files after upload (meaningful with remote output only).
        compression: ``None`` or a spec like ``"zstd"`` / ``"zstd:7"``, recorded verbatim.
        hashes: hash algorithms, unique and sorted.
        size_limit: shard size limit in bytes or a string like ``"64mb"``; ``None`` or 0 = one shard.
        progress_bar, max_workers, retry, exist_ok: mosaic's keyword options. ``exist_ok=True`` empties a
            non-empty output directory that holds only a previous output (index, shards, partitions) and
            refuses one holding anything else (:class:`OutputExistsError` naming it; mosaic deleted it
            all); ``False`` refuses any non-empty directory. A local output directory is held by one
            writer at a time: a second one is refused with :class:`OutputInUseError`.
    """

    format: ClassVar[str]
    extra_bytes_per_sample: ClassVar[int] = 0

    def __init__(
        self,
        *,
        out: str | os.PathLike[str] | tuple[str, str],
        keep_local: bool = False,
        compression: str | None = None,
        hashes: Sequence[str] | None = None,
        size_limit: int | str | None = DEFAULT_SIZE_LIMIT,
        **kwargs: Any,
    ) -> None:
        for key in kwargs:
            if key not in _OPTIONS:
                raise ConfigError(
                    f"{type(self).__name__}: unknown argument {key!r} (allowed: {', '.join(_OPTIONS)})"
                )
        self.keep_local = keep_local
        self.progress_bar = bool(kwargs.get("progress_bar", False))
        self.max_workers = int(kwargs.get("max_workers") or min(32, (os.cpu_count() or 1) + 4))
        self.retry = int(kwargs.get("retry", 2))
        self.exist_ok = bool(kwargs.get("exist_ok", False))
        self.compression = compression
        self._codec: Compression | None = get_compression(compression)
        self.hashes = validate_hashes(list(hashes) if hashes is not None else None)
        self.size_limit = _parse_size_limit(size_limit)
        # Remote output plugs in here: a subclass's _open_output may set an uploader for every file.
        self.uploader: Uploader | None = None
        # The local output directory, held (flock) until finish() or abandon(); set by _open_output.
        self._claim: OutputClaim | None = None
        self.local = self._open_output(out)
        self.shards: list[ShardEntry] = []
        self._samples: list[bytes] = []
        self._shard_size = -1  # set from extra_bytes_per_shard at the first write (subclass is ready then)
        self._closed = False

    # -- subclass interface ---------------------------------------------------------------------
    def _open_output(self, out: object) -> Path:
        """Resolve ``out`` to the local directory to write into (local directories only here).

        ``astreaming.output`` overrides this to accept remote URLs and ``(local, remote)`` tuples and to
        set :attr:`uploader`; ``format`` itself never imports the storage layer.
        """
        self._claim = _prepare_out(out, exist_ok=self.exist_ok, writer=type(self).__name__)
        return self._claim.path

    @property
    def extra_bytes_per_shard(self) -> int:
        """Bytes a shard costs besides its samples (counted against size_limit)."""
        return 0

    @abstractmethod
    def encode_sample(self, sample: Mapping[str, Any]) -> bytes:
        """The stored bytes of one sample."""

    @abstractmethod
    def write_shard(self, index: int, samples: list[bytes]) -> ShardEntry:
        """Write shard ``index`` holding ``samples`` (via :meth:`emit_file`) and return its entry."""

    def config(self) -> dict[str, Any]:
        """The writer config shared by the index entries (and embedded in MDS / meta files)."""
        return {
            "compression": self.compression,
            "format": self.format,
            "hashes": list(self.hashes),
            "size_limit": self.size_limit,
            "version": 2,
        }

    def get_config(self) -> dict[str, Any]:
        """The writer config, as stored in each shard's index entry (mosaic's ``get_config``)."""
        return self.config()

    # -- public API -----------------------------------------------------------------------------
    def write(self, sample: Mapping[str, Any]) -> None:
        """Add one sample; flush the current shard first if the sample would overflow it."""
        if self._closed:
            raise ConfigError(f"{type(self).__name__}: write() after finish()")
        blob = self.encode_sample(sample)
        size = len(blob) + self.extra_bytes_per_sample
        if self._shard_size < 0:
            self._shard_size = self.extra_bytes_per_shard
        # Mosaic's rule: flush first if the sample does not fit, then append WITHOUT re-checking, so
        # a first sample larger than the limit yields a 0-sample shard followed by an oversized one.
        if self.size_limit and self.size_limit < self._shard_size + size:
            self.flush_shard()
        self._samples.append(blob)
        self._shard_size += size

    def flush_shard(self) -> None:
        """Write the current shard (even if empty, as mosaic does when a sample overflows) and reset."""
        entry = self.write_shard(len(self.shards), self._samples)
        self.shards.append(entry)
        self._samples = []
        self._shard_size = self.extra_bytes_per_shard

    def finish(self) -> None:
        """Flush the last shard and publish index.json (atomically). Idempotent."""
        if self._closed:
            return
        try:
            if self._samples:
                self.flush_shard()
            index_path = self.local / self.local_index_name()
            write_text_atomic(index_path, dump_index(self.shards))
            self._closed = True
            if self.uploader is not None:
                self.uploader.upload(index_path, "index.json")
                self.uploader.finish()
        finally:
            self.release_output()

    def local_index_name(self) -> str:
        """The name the index is written under locally before its upload (``index.json`` here).

        An uploading writer that keeps no local copy writes it under a temporary name instead: its
        uploaded shards are deleted one by one, so an ``index.json`` standing beside them while the
        uploads run would describe missing files if the process were killed before the end.
        """
        return "index.json"

    def abandon(self) -> None:
        """Stop without publishing an index (the shards written so far stay on disk)."""
        self._closed = True
        self._samples = []
        try:
            if self.uploader is not None:
                self.uploader.abort()
        finally:
            self.release_output()

    def release_output(self) -> None:
        """Let other writers have the local output directory (done by finish() and abandon())."""
        if self._claim is not None:
            self._claim.release()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abandon()

    # -- helpers for subclasses -----------------------------------------------------------------
    def emit_file(self, basename: str, data: bytes) -> tuple[FileInfo, FileInfo | None]:
        """Write one shard file, compressed if configured; return ``(raw_info, zip_info)``.

        When compressing only ``basename + extension`` is written; the raw info still describes the
        uncompressed bytes.
        """
        raw = FileInfo(basename, len(data), {algo: hash_bytes(algo, data) for algo in self.hashes})
        if self._codec is None:
            self._put(basename, data)
            return raw, None
        packed = self._codec.compress(data)
        zip_name = basename + self._codec.extension
        self._put(zip_name, packed)
        return raw, FileInfo(zip_name, len(packed), {algo: hash_bytes(algo, packed) for algo in self.hashes})

    def _put(self, basename: str, data: bytes) -> None:
        path = self.local / basename
        with open(path, "wb") as f:
            f.write(data)
        if self.uploader is not None:
            self.uploader.upload(path, basename)


def prepare_local_out(local: str | os.PathLike[str], *, exist_ok: bool) -> OutputClaim:
    """The local half of a remote output: the same checks and claim as a local ``out`` (astreaming.output)."""
    return _prepare_out(os.fspath(local), exist_ok=exist_ok)


def check_local_out(local: str | os.PathLike[str], *, exist_ok: bool) -> None:
    """Raise what :func:`prepare_local_out` would raise, changing nothing (checked before the remote)."""
    check_output(Path(local), exist_ok=exist_ok)


def _parse_size_limit(size_limit: int | str | None) -> int | None:
    if size_limit is None:
        return None
    value = bytes_to_int(size_limit, name="size_limit")
    if value < 0:
        raise ConfigError(f"size_limit must be >= 0, got {size_limit!r}")
    if value >= 1 << 32:
        # MDS offsets are uint32: a shard must stay under 4 GiB.
        raise ConfigError(f"size_limit must be < 2**32 bytes, got {size_limit!r} ({value})")
    return value or None


def is_remote_out(out: object) -> bool:
    """Whether ``out`` names remote output: a ``(local, remote)`` tuple or a URL other than file://."""
    return isinstance(out, tuple) or (
        isinstance(out, str) and bool(_URL_RE.match(out)) and not out.startswith("file://")
    )


def _prepare_out(out: object, *, exist_ok: bool, writer: str = "this writer") -> OutputClaim:
    """Validate and claim the local output directory, emptying a previous output if ``exist_ok``."""
    if is_remote_out(out):
        raise ConfigError(
            f"out: remote output is not supported yet by astreaming.format's {writer} ({out!r}); "
            f"use the uploading writer: from astreaming.output import {writer}"
        )
    if isinstance(out, str) and out.startswith("file://"):
        out = out[len("file://") :]
    if not isinstance(out, (str, os.PathLike)):
        raise ConfigError(f"out: expected a directory path, got {out!r}")
    return claim_output(Path(out), exist_ok=exist_ok)
