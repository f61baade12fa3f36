"""Whole-file compression of shards: zstd, gz, bz2, br and (raw block) snappy, as mosaicml-streaming 0.13.

``get_compression("zstd:7")`` returns a :class:`Compression`. Compressing reproduces mosaic's bytes (gz
aside: its header carries a timestamp, which we set to 0 so that our output is reproducible).
Decompression never produces more bytes than the index says the raw file has: a corrupt or hostile file
cannot fill memory or disk (decompression bomb), and any size difference is a :class:`FormatError`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from astreaming.crashpoints import crash_point
from astreaming.errors import ConfigError, FormatError

if TYPE_CHECKING:
    from types import ModuleType

_CHUNK = 1 << 20  # streaming read size: bounded memory per decompression


# The three codec libraries are imported on first use, not with this module: every process that reads a
# dataset imports this module, most datasets are not compressed, and together they add ~2 MB of resident
# memory and ~12 ms of import time to each process (each spawned DataLoader worker included).
def _zstandard() -> ModuleType:
    import zstandard

    return zstandard


def _brotli() -> ModuleType:
    import brotli

    return cast("ModuleType", brotli)


def _cramjam() -> ModuleType:
    import cramjam

    return cramjam


@cache
def _codec_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt input makes the codecs raise (zstd, zlib/gzip, bz2 and lzma-style OSError,
    brotli, cramjam): mapped to FormatError at this boundary, once."""
    return (
        _zstandard().ZstdError,
        zlib.error,
        OSError,
        EOFError,
        _brotli().error,
        _cramjam().DecompressionError,
        ValueError,
    )


def _open_zstd(src: BinaryIO) -> BinaryIO:
    reader: BinaryIO = _zstandard().ZstdDecompressor().stream_reader(src, read_across_frames=True)
    return reader


def _open_gzip(src: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, gzip.GzipFile(fileobj=src, mode="rb"))


class _Bz2Reader(io.RawIOBase):
    """A readable raw stream over one or more bz2 streams; trailing bytes that are not a stream fail.

    (``bz2.BZ2File`` silently ignores such trailing garbage; ``bz2.decompress``, which mosaic uses,
    rejects it.)
    """

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._dec = bz2.BZ2Decompressor()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while True:
            if self._dec.eof:
                data = self._dec.unused_data or self._src.read(_CHUNK)
                if not data:
                    return 0
                self._dec = bz2.BZ2Decompressor()  # the next stream; anything else raises OSError
            elif self._dec.needs_input:
                data = self._src.read(_CHUNK)
                if not data:
                    raise EOFError("bz2 data ends before the end-of-stream marker")
            else:
                data = b""  # the decompressor still holds output from earlier input
            out = self._dec.decompress(data, len(buffer))
            if out:
                buffer[: len(out)] = out
                return len(out)


def _open_bz2(src: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_Bz2Reader(src), buffer_size=_CHUNK)


class _BrotliReader(io.RawIOBase):
    """A readable raw stream over brotli data that decodes only as much as it is asked for."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._dec = _brotli().Decompressor()
        self._pending = b""  # output beyond what the last read asked for (the limit is a soft cap)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if self._dec.is_finished():
                return 0
            chunk = self._src.read(_CHUNK) if self._dec.can_accept_more_data() else b""
            self._pending = self._dec.process(chunk, output_buffer_limit=len(buffer))
            if not chunk and not self._pending and not self._dec.is_finished():
                # No input left, nothing more flushed, and no end marker seen.
                raise EOFError("brotli stream ends before its end marker")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _open_brotli(src: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_BrotliReader(src), buffer_size=_CHUNK)


def _read_varint(data: bytes | memoryview) -> int:
    """The uncompressed length that prefixes a raw snappy block (little-endian base-128)."""
    value = 0
    for i in range(10):
        if i >= len(data):
            break
        byte = data[i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value
    raise FormatError("truncated or invalid snappy length prefix")


@dataclass(frozen=True)
class _Family:
    name: str
    extension: str
    levels: range | None  # None: the family takes no level
    default_level: int | None
    compress: Callable[[bytes, int | None], bytes]
    open_reader: Callable[[BinaryIO], BinaryIO] | None  # None: not streamable (snappy)


def _compress_zstd(data: bytes, level: int | None) -> bytes:
    # zstandard's one-shot compress writes the content size in the frame header, as the `zstd` package
    # that mosaic used does: the frames are byte-identical at the same level.
    compressed: bytes = _zstandard().ZstdCompressor(level=level if level is not None else 3).compress(data)
    return compressed


def _compress_gz(data: bytes, level: int | None) -> bytes:
    return gzip.compress(data, compresslevel=level if level is not None else 9, mtime=0)


def _compress_bz2(data: bytes, level: int | None) -> bytes:
    return bz2.compress(data, compresslevel=level if level is not None else 9)


def _compress_br(data: bytes, level: int | None) -> bytes:
    result: bytes = _brotli().compress(data, quality=level if level is not None else 11)
    return result


def _compress_snappy(data: bytes, level: int | None) -> bytes:
    return bytes(_cramjam().snappy.compress_raw(data))


_FAMILIES: dict[str, _Family] = {
    f.name: f
    for f in (
        _Family("br", ".br", range(0, 12), 11, _compress_br, _open_brotli),
        _Family("bz2", ".bz2", range(1, 10), 9, _compress_bz2, _open_bz2),
        _Family("gz", ".gz", range(0, 10), 9, _compress_gz, _open_gzip),
        _Family("snappy", ".snappy", None, None, _compress_snappy, None),
        _Family("zstd", ".zstd", range(1, 23), 3, _compress_zstd, _open_zstd),
    )
}


def _bomb(name: str, expected: int) -> FormatError:
    return FormatError(f"{name}: decompresses to more than the {expected} bytes its index records")


def _short(name: str, got: int, expected: int) -> FormatError:
    return FormatError(f"{name}: decompressed to {got} bytes, its index records {expected}")


def _corrupt(name: str, family: str, err: BaseException) -> FormatError:
    return FormatError(f"{name}: corrupt {family} data: {type(err).__name__}: {err}")


class _WriteFailed(Exception):
    """Carries an OSError from writing the output, so it is not mistaken for corrupt input."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


class _FileSink:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: bytes) -> int:
        try:
            written = self._file.write(data)
        except OSError as err:
            raise _WriteFailed(err) from err
        crash_point("decompress.writing")
        return written


def _copy_bounded(reader: BinaryIO, dst: _FileSink | _BytearrayWriter, limit: int | None, name: str) -> int:
    """Copies the decompressed stream into ``dst``, never reading more than ``limit`` + 1 bytes."""
    total = 0
    while True:
        want = _CHUNK if limit is None else min(_CHUNK, limit - total + 1)
        chunk = reader.read(want)
        if not chunk:
            return total
        total += len(chunk)
        if limit is not None and total > limit:
            raise _bomb(name, limit)
        dst.write(chunk)


@dataclass(frozen=True)
class Compression:
    """A compression setting as written in ``index.json`` (``"zstd"``, ``"zstd:7"``, ``"br:5"``, ...).

    Attributes:
        spec: the string as the user gave it; it goes into index.json verbatim.
        family: ``"zstd"``, ``"gz"``, ``"bz2"``, ``"br"`` or ``"snappy"``.
        level: the level given after ``:``, or None for the family's default.
        extension: the compressed file suffix (``".zstd"``, ``".gz"``, ...).
    """

    spec: str
    family: str
    level: int | None
    extension: str
    _family: _Family = field(repr=False, compare=False)

    def compress(self, data: bytes) -> bytes:
        """Compresses a whole file's bytes."""
        return self._family.compress(data, self.level)

    def decompress(self, data: bytes, *, expected_size: int | None = None, name: str = "<data>") -> bytes:
        """Decompresses a whole file held in memory.

        Args:
            data: the compressed bytes.
            expected_size: the raw size the index records; output beyond it is never produced.
                None (the default) disables the guard.
            name: the file name for error messages.

        Returns:
            The raw bytes (exactly ``expected_size`` of them when it is given).

        Raises:
            FormatError: corrupt data, or an output size other than ``expected_size``.
        """
        try:
            out = self._decompress(data, expected_size, name)
        except FormatError:
            raise
        except _codec_errors() as err:
            raise _corrupt(name, self.family, err) from err
        if expected_size is not None and len(out) != expected_size:
            raise _short(name, len(out), expected_size)
        return out

    def _decompress(self, data: bytes, expected: int | None, name: str) -> bytes:
        if self.family == "snappy":
            return self._decompress_snappy(data, expected, name)
        # Fast path: a single zstd frame that records exactly the expected size decodes in one
        # allocation of that size. Anything else (several frames, no size, a different size) takes the
        # bounded streaming path below.
        if self.family == "zstd" and expected is not None:
            zstd = _zstandard()
            if zstd.frame_content_size(data) == expected:
                whole: bytes = zstd.ZstdDecompressor().decompress(data, allow_extra_data=False)
                return whole
        assert self._family.open_reader is not None
        with self._family.open_reader(io.BytesIO(data)) as reader:
            if expected is None:
                return reader.read()
            out = bytearray()
            _copy_bounded(reader, _BytearrayWriter(out), expected, name)
            return bytes(out)

    def stream_reader(self, src: BinaryIO) -> BinaryIO | None:
        """A reader of the decompressed bytes of ``src``, decoding only as much as it is asked for.

        Returns None for snappy, whose raw block format has no streaming form. Corrupt input raises
        from ``read`` (the codec's own exception type; :meth:`decompress` maps them to FormatError).
        """
        return None if self._family.open_reader is None else self._family.open_reader(src)

    @staticmethod
    def _decompress_snappy(data: bytes, expected: int | None, name: str) -> bytes:
        # A raw snappy block states its length up front: check it before decoding anything.
        length = _read_varint(data[:10])
        if expected is not None and length > expected:
            raise _bomb(name, expected)
        return bytes(_cramjam().snappy.decompress_raw(data))

    def decompress_file(self, src: Path, dst: Path, *, expected_size: int | None) -> None:
        """Decompresses ``src`` into ``dst`` with bounded memory (snappy: the whole block at once).

        Writes ``dst`` in place (the caller writes to a temporary name and renames it). On error ``dst``
        may hold partial output; the caller removes it.

        Args:
            src: the compressed file.
            dst: the raw file to write.
            expected_size: the raw size the index records; output beyond it is never produced.
                None disables the guard.

        Raises:
            FormatError: corrupt data, or an output size other than ``expected_size``; names ``src``.
                (A read error on ``src`` part-way through is reported this way too, and so is an
                ``src`` that is a directory.)
            OSError: ``src`` cannot be opened or ``dst`` written (disk full, ...).
        """
        name = str(src)
        try:
            fin = open(src, "rb")  # noqa: SIM115 - closed by the with below
        except IsADirectoryError:
            raise FormatError(f"{name}: is a directory, not a compressed shard file") from None
        with fin, open(dst, "wb") as fout:
            sink = _FileSink(fout)
            try:
                if self._family.open_reader is None:
                    # The raw snappy format has no streaming form; the file is one block.
                    raw = self._decompress_snappy(fin.read(), expected_size, name)
                    sink.write(raw)
                    total = len(raw)
                else:
                    with self._family.open_reader(fin) as reader:
                        total = _copy_bounded(reader, sink, expected_size, name)
            except _WriteFailed as failed:
                raise failed.err from None
            except FormatError:
                raise
            except _codec_errors() as err:
                raise _corrupt(name, self.family, err) from err
        if expected_size is not None and total != expected_size:
            raise _short(name, total, expected_size)


class _BytearrayWriter:
    """The ``write`` side of a bytearray, for :func:`_copy_bounded`."""

    def __init__(self, out: bytearray) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        self._out += data
        return len(data)


def _parse(spec: str) -> Compression:
    family_name, sep, level_text = spec.partition(":")
    family = _FAMILIES.get(family_name)
    level: int | None = None
    if family is not None and sep:
        if family.levels is not None and level_text.isdigit() and int(level_text) in family.levels:
            level = int(level_text)
        else:
            family = None
    if family is None:
        raise ConfigError(
            f"compression: unsupported value {spec!r}; use one of {', '.join(_FAMILIES)} "
            f"(optionally family:level, e.g. 'zstd:7')"
        )
    return Compression(spec, family.name, level, family.extension, family)


_CACHE: dict[str, Compression] = {}


def get_compression(spec: str | None) -> Compression | None:
    """Parses a ``compression`` argument or index value.

    Args:
        spec: None, a family (``"zstd"``, ``"gz"``, ``"bz2"``, ``"br"``, ``"snappy"``) or
            ``family:level`` (zstd 1-22, gz 0-9, bz2 1-9, br 0-11; snappy takes none).

    Returns:
        None for None, else the :class:`Compression`.

    Raises:
        ConfigError: the spec is not valid; the message names ``compression`` and the valid families.
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise ConfigError(f"compression: expected a string or None, got {type(spec).__name__}")
    found = _CACHE.get(spec)
    if found is None:
        found = _CACHE[spec] = _parse(spec)
    return found


def compression_names() -> list[str]:
    """Every valid compression spec: each family alone and ``family:level`` for each of its levels."""
    names: list[str] = []
    for family in _FAMILIES.values():
        names.append(family.name)
        if family.levels is not None:
            names.extend(f"{family.name}:{level}" for level in family.levels)
    return names


__all__ = ["Compression", "compression_names", "get_compression"]
