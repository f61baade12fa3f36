"""MDS shard reader: one mapping per shard, a validated offsets table, a compiled per-sample decoder.

Why mmap rather than reading the file into ``bytes``: slicing an mmap costs the same as slicing bytes
(one memcpy into a new ``bytes`` object, no syscall once the pages are resident), but the mapping does
not read a 64 MB shard up front, and DataLoader workers mapping the same shard share the page cache
instead of each holding a private copy. The reader also accepts a ``bytes`` object (a decompressed
shard, or a header plus ranges fetched remotely), and :func:`parse_mds_header` /
:func:`mds_header_size` let a caller decode a few samples from byte ranges without the whole file.

Layout (reference §1.3): ``uint32 N``, ``uint32 offsets[N+1]`` (absolute positions in the file), the
writer config JSON (ends at ``offsets[0]``), then the samples; ``offsets[N]`` is the file size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import mmap
import os
import stat
import struct
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import MDSEntry
from astreaming.format.mds.columns import ColumnLayout, Columns, column_layout
from astreaming.format.mds.encodings import get_encoding
from astreaming.format.pages import release_pages

__all__ = [
    "FileIdentity",
    "DecodePlan",
    "MDSReader",
    "SampleDecoder",
    "build_decoder",
    "map_file",
    "map_identified",
    "mds_header_size",
    "parse_mds_header",
]

# decode(buf, begin, end) -> dict: the sample occupies buf[begin:end] (buf: mmap or bytes).
SampleDecoder = Callable[[Any, int, int], dict[str, Any]]
Buffer = mmap.mmap | bytes | bytearray | memoryview
#: A file's ``(st_dev, st_ino)``.
FileIdentity = tuple[int, int]

#: A run of samples whose bytes span at least this much is read from the file with one ``pread`` and
#: decoded from that copy, not through the mapping (see :func:`_run_reader`). Below it (runs of
#: small samples) the mapping is faster: 0.61 against 0.67 us a sample on 30-byte samples
#: (``benchmarks/read_segments.py``).
SPAN_READ_MIN = 64 << 10


def mds_header_size(prefix: Buffer, *, source: str = "<mds>") -> int:
    """Bytes needed to parse the header (N and the offsets table), given at least the first 4 bytes."""
    if len(prefix) < 4:
        raise FormatError(f"{source}: truncated MDS shard: {len(prefix)} bytes, need at least 4")
    (num,) = struct.unpack_from("<I", prefix, 0)
    return 4 + 4 * (int(num) + 1)


def parse_mds_header(
    data: Buffer,
    *,
    source: str,
    file_size: int | None = None,
    samples: int | None = None,
    min_sample_size: int = 0,
) -> npt.NDArray[np.uint32]:
    """Read and validate the offsets table from a shard or a prefix of it.

    Args:
        data: the shard bytes, or at least its first :func:`mds_header_size` bytes.
        source: the shard file, named in errors.
        file_size: the full file size when known (``len(data)`` is not the size when ``data`` is a prefix).
        samples: the sample count the index records, checked against N when given.
        min_sample_size: the smallest valid sample blob (variable-size length words + fixed columns).

    Returns:
        ``offsets``, ``N + 1`` uint32 absolute positions (a read-only view into ``data``).

    Raises:
        FormatError: truncated header, N differs from the index, offsets not monotonic, before the end of
            the header, too close for one sample, or ``offsets[N] != file_size``.
    """
    need = mds_header_size(data, source=source)
    num = (need - 8) // 4
    if samples is not None and num != samples:
        raise FormatError(f"{source}: shard holds {num} samples but the index says {samples}")
    if len(data) < need:
        raise FormatError(f"{source}: truncated MDS shard: {len(data)} bytes, offsets table needs {need}")
    offsets = np.frombuffer(data, np.dtype("<u4"), num + 1, 4)
    if int(offsets[0]) < need:
        raise FormatError(
            f"{source}: first sample offset {int(offsets[0])} lies inside the header ({need} bytes)"
        )
    # int64: a uint32 diff would wrap around on decreasing offsets.
    too_small = np.diff(offsets.astype(np.int64)) < min_sample_size
    if num and bool(too_small.any()):
        bad = int(np.argmax(too_small))
        raise FormatError(
            f"{source}: offsets are not increasing or too close at sample {bad} "
            f"({int(offsets[bad])} -> {int(offsets[bad + 1])}, minimum sample size {min_sample_size})"
        )
    if file_size is not None and int(offsets[num]) != file_size:
        kind = "offsets point past the end of the file" if int(offsets[num]) > file_size else "trailing bytes"
        raise FormatError(f"{source}: {kind}: last offset {int(offsets[num])}, file size {file_size}")
    return offsets


@dataclasses.dataclass(frozen=True)
class DecodePlan:
    """The compiled decoder of one MDS column layout.

    Attributes:
        decode: ``decode(buf, begin, end)`` -> the sample dict stored in ``buf[begin:end]``.
        bind: ``bind(buf, offsets)`` -> ``get(i)``, the decoder of sample ``i`` of a whole shard
            (``offsets`` indexable by int); ``get`` raises IndexError outside ``0 <= i < N``.
        min_size: the smallest valid sample blob (length words plus fixed-size columns).
        bind_many: ``bind_many(buf, offsets)`` -> ``get_many(indices)``, the list of the samples at
            ``indices``, decoded in one loop (no Python call per sample: ~25% faster than ``get``
            in a loop for small samples).
    """

    decode: SampleDecoder
    bind: Callable[[Any, Sequence[int]], Callable[[int], dict[str, Any]]]
    min_size: int
    bind_many: Callable[[Any, Sequence[int]], Callable[[Iterable[int]], list[dict[str, Any]]]]


def build_decoder(
    names: Sequence[str],
    encodings: Sequence[str],
    sizes: Sequence[int | None],
    *,
    source: str,
    allow_unsafe_types: bool = False,
) -> DecodePlan:
    """Compile the decoder of one MDS column layout.

    Args:
        names: column names, in stored order.
        encodings: encoding spec per column.
        sizes: fixed size per column, ``None`` for variable-size columns.
        source: the shard file, named in errors.
        allow_unsafe_types: permit ``pkl`` columns.

    Returns:
        The :class:`DecodePlan`. Its functions raise FormatError when a blob's lengths do not add up,
        before decoding any column.

    Raises:
        ConfigError: a ``pkl`` column without ``allow_unsafe_types=True`` (before any sample is read).
        FormatError: unknown encoding, or a column size that contradicts its encoding.
    """
    namespace: dict[str, Any] = {}
    values: list[str] = []
    for col, (name, spec, size) in enumerate(zip(names, encodings, sizes, strict=True)):
        try:
            enc = get_encoding(spec)
        except FormatError as exc:
            raise FormatError(f"{source}: column {name!r}: {exc}") from None
        if enc.unsafe and not allow_unsafe_types:
            raise ConfigError(
                f"{source}: column {name!r} uses the unsafe encoding {spec!r} (pickle); pass "
                "allow_unsafe_types=True to read it if you trust this dataset"
            )
        if enc.size != size:
            raise FormatError(
                f"{source}: column {name!r}: encoding {spec!r} has size {enc.size}, index says {size}"
            )
        namespace[f"n{col}"] = name
        # The three commonest encodings are inlined (same semantics as their Encoding.decode, checked
        # by the golden tests); a slice of an mmap or of bytes is already ``bytes``. ``{s}`` is the
        # column's slice, ``{at}`` its first byte (an ``int`` is unpacked in place: no 8-byte slice).
        if spec == "bytes":
            values.append("{s}")
        elif spec == "str":
            values.append('{s}.decode("utf-8")')
        elif spec == "int":
            values.append("_int64(buf, {at})[0]")
        else:
            namespace[f"d{col}"] = enc.decode
            values.append(f"d{col}({{s}})")

    num_var = sum(1 for s in sizes if s is None)
    head = 4 * num_var
    namespace["_unpack"] = struct.Struct(f"<{num_var}I").unpack_from
    namespace["_bad"] = functools.partial(_bad, source)
    namespace["_int64"] = _INT64
    namespace["_FormatError"] = FormatError
    namespace["_DECODE_ERRORS"] = _DECODE_ERRORS
    namespace["_corrupt"] = functools.partial(_corrupt_value, source)
    namespace["_corrupt_at"] = functools.partial(_corrupt_at, source)
    body: list[str] = []
    if num_var:
        lens = ", ".join(f"l{i}" for i in range(num_var))
        body.append(f"{lens}{',' if num_var == 1 else ''} = _unpack(buf, begin)")
    body.append(f"q = begin + {head}")
    pos = "q"  # the variable holding the current absolute position
    var_i = 0
    items: list[str] = []
    for col, size in enumerate(sizes):
        if size is None:
            step = f"l{var_i}"
            var_i += 1
        else:
            step = str(size)
        body.append(f"p{col} = {pos} + {step}")
        items.append(f"n{col}: " + values[col].format(s=f"buf[{pos}:p{col}]", at=pos))
        pos = f"p{col}"
    # Every position is computed and checked before any column is decoded.
    body.append(f"if {pos} != end:")
    body.append("    raise _bad(begin, end)")
    body.append("return {" + ", ".join(items) + "}")
    consts = ", ".join(f"{k}={k}" for k in namespace)
    # A corrupt value (bad UTF-8, bad JSON, an impossible array shape) surfaces as FormatError naming the
    # shard and sample. The try costs nothing until something raises (zero-cost exceptions).
    guard = (
        "except _FormatError:\n    raise\n"
        "except _DECODE_ERRORS as exc:\n    raise _corrupt(i, exc) from exc\n"
    ).splitlines()
    decode_guard = [line.replace("_corrupt(i, exc)", "_corrupt_at(begin, exc)") for line in guard]
    decode_src = (
        f"def decode(buf, begin, end, {consts}):\n"
        "    try:\n"
        + "".join(f"        {line}\n" for line in body)
        + "".join(f"    {line}\n" for line in decode_guard)
    )
    bind_src = (
        f"def bind(buf, offs, {consts}):\n"
        "    def get(i):\n"
        "        if i < 0:\n"
        "            raise IndexError(i)\n"
        "        begin = offs[i]\n"
        "        end = offs[i + 1]\n"
        "        try:\n"
        + "".join(f"            {line}\n" for line in body)
        + "".join(f"        {line}\n" for line in guard)
        + "    return get\n"
    )
    # The same body in a loop over many indices, appending to a list: the batch form of ``get``.
    many_body = [*body[:-1], "append({" + ", ".join(items) + "})"]
    bind_many_src = (
        f"def bind_many(buf, offs, {consts}):\n"
        "    def get_many(indices):\n"
        "        out = []\n"
        "        append = out.append\n"
        "        i = -1\n"
        "        try:\n"
        "            for i in indices:\n"
        "                if i < 0:\n"
        "                    raise IndexError(i)\n"
        "                begin = offs[i]\n"
        "                end = offs[i + 1]\n"
        + "".join(f"                {line}\n" for line in many_body)
        + "".join(f"        {line}\n" for line in guard)
        + "        return out\n"
        "    return get_many\n"
    )
    exec(_compiled(decode_src + bind_src + bind_many_src), namespace)
    min_size = head + sum(s for s in sizes if s is not None)
    return DecodePlan(namespace["decode"], namespace["bind"], min_size, namespace["bind_many"])


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> types.CodeType:
    """Compile a decoder's source once per column layout: every shard of a dataset shares it, and a
    reader reopened after an eviction should cost a mapping, not a compilation (~2 ms)."""
    return compile(text, "<mds decoder>", "exec")


#: An MDS ``int``: 8 bytes, little-endian, signed (what ``int.from_bytes(..., signed=True)`` of them gives).
_INT64 = struct.Struct("<q").unpack_from

#: What decoding a corrupt value raises (UnicodeDecodeError and JSONDecodeError are ValueErrors).
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, struct.error, EOFError, MemoryError)


def _corrupt_value(source: str, index: int, exc: BaseException) -> FormatError:
    return FormatError(f"{source}: corrupt MDS sample {index}: {type(exc).__name__}: {exc}")


def _corrupt_at(source: str, begin: int, exc: BaseException) -> FormatError:
    return FormatError(f"{source}: corrupt MDS sample at byte {begin}: {type(exc).__name__}: {exc}")


def _bad(source: str, begin: int, end: int) -> FormatError:
    return FormatError(f"{source}: corrupt MDS sample at bytes {begin}..{end}: column lengths do not add up")


class MDSReader:
    """Random access to the samples of one MDS shard.

    ``reader[i]`` returns the decoded sample dict, ``reader.get_bytes(i)`` its raw blob. Neither makes a
    syscall: the offsets are read through a memoryview over the mapping and the sample is sliced from it.
    Use :meth:`open` for a file and :meth:`from_bytes` for an in-memory shard.

    Args:
        buf: the whole shard (an mmap or bytes).
        entry: the shard's index entry.
        source: the shard file, named in errors.
        allow_unsafe_types: permit ``pkl`` columns.
        plan: the :class:`DecodePlan` from :meth:`plan` when already built.

    Attributes:
        get_item: ``get_item(i)`` decodes sample ``i`` (``0 <= i < N``, else IndexError).
        get_many: ``get_many(indices)`` decodes the samples at ``indices`` (each ``0 <= i < N``, else
            IndexError) into a list; the fastest path for runs of samples.
    """

    def __init__(
        self,
        buf: mmap.mmap | bytes,
        entry: MDSEntry,
        *,
        source: str,
        allow_unsafe_types: bool = False,
        plan: DecodePlan | None = None,
        identity: FileIdentity | None = None,
    ) -> None:
        # Build the decoder first: a pkl column must fail before any sample is touched.
        plan = plan or self.plan(entry, source=source, allow_unsafe_types=allow_unsafe_types)
        self.source = source
        self.entry = entry
        self.offsets = parse_mds_header(
            buf, source=source, file_size=len(buf), samples=entry.samples, min_sample_size=plan.min_size
        )
        self._buf = buf
        self._num = entry.samples
        # memoryview indexing yields Python ints ~10x faster than indexing the numpy array.
        if sys.byteorder == "little":
            table = memoryview(buf)[4 : 4 + 4 * (self._num + 1)]
            if _copy_offsets(buf, len(table)):
                table = memoryview(table.tobytes())
            self._offs: Sequence[int] = table.cast("I")
        else:  # pragma: no cover - big-endian hosts
            self._offs = self.offsets.astype(np.int64).tolist()
        self.get_item: Callable[[int], dict[str, Any]] = plan.bind(buf, self._offs)
        self.get_many: Callable[[Iterable[int]], list[dict[str, Any]]] = plan.bind_many(buf, self._offs)
        #: ``get_run(indices)``: what ``get_many`` returns, read the fastest way for a run of samples
        #: next to each other (a walk's segment): see :func:`_run_reader`.
        self.get_run: Callable[[list[int]], list[dict[str, Any]]] = self.get_many
        mean = (len(buf) - int(self.offsets[0])) // max(1, self._num)
        if isinstance(buf, mmap.mmap) and identity is not None and mean * 64 >= SPAN_READ_MIN:
            # Samples large enough for a 64-sample run to be read by span. A closure over what it needs,
            # not a bound method: the reader must not reference itself (a cycle would keep its mapping,
            # and the pages it holds, until the cyclic collector runs).
            self.get_run = _run_reader(source, identity, self._offs, self._num, plan, self.get_many)
        # Columnar decoding (get_columns) is built on first use: the plain iteration never needs it.
        self._layout: ColumnLayout | None = None

    @staticmethod
    def plan(entry: MDSEntry, *, source: str, allow_unsafe_types: bool = False) -> DecodePlan:
        """Check the columns of ``entry`` and compile its decoder (see :func:`build_decoder`)."""
        return build_decoder(
            entry.column_names,
            entry.column_encodings,
            entry.column_sizes,
            source=source,
            allow_unsafe_types=allow_unsafe_types,
        )

    @classmethod
    def open(cls, path: str | Path, entry: MDSEntry, *, allow_unsafe_types: bool = False) -> MDSReader:
        """Map the shard file at ``path`` (read-only).

        Raises:
            ConfigError: a ``pkl`` column without ``allow_unsafe_types`` (checked before the file is opened).
            FormatError: the file is missing, truncated, or its size differs from ``raw_data.bytes``.
        """
        source = str(path)
        plan = cls.plan(entry, source=source, allow_unsafe_types=allow_unsafe_types)
        buf, identity = map_identified(path, expected_size=entry.raw_data.bytes)
        try:
            return cls(buf, entry, source=source, plan=plan, identity=identity)
        except BaseException:
            if isinstance(buf, mmap.mmap):
                buf.close()
            raise

    @classmethod
    def from_bytes(
        cls, data: bytes, entry: MDSEntry, *, source: str, allow_unsafe_types: bool = False
    ) -> MDSReader:
        """Read a shard held in memory (for example just decompressed)."""
        if len(data) != entry.raw_data.bytes:
            raise FormatError(
                f"{source}: shard has {len(data)} bytes but the index says {entry.raw_data.bytes}"
            )
        return cls(bytes(data), entry, source=source, allow_unsafe_types=allow_unsafe_types)

    @property
    def samples(self) -> int:
        """Number of samples in the shard."""
        return self._num

    def __len__(self) -> int:
        return self._num

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Decode sample ``index`` (negative counts from the end)."""
        if index < 0:
            index += self._num
            if index < 0:
                raise IndexError(f"{self.source}: sample index out of range")
        try:
            return self.get_item(index)
        except IndexError:
            raise IndexError(f"{self.source}: sample {index} out of range (shard has {self._num})") from None

    def get_columns(self, indices: Sequence[int]) -> Columns | list[dict[str, Any]]:
        """The samples at ``indices`` (each ``0 <= i < N``), column by column (see ``columns.py``).

        Returns the per-sample dicts of :meth:`get_many` instead where columns cannot be decoded at once
        (a big-endian host); a corrupt sample raises the same FormatError as :meth:`get_many`.
        """
        layout = self._layout
        if layout is None:
            if not self._num and not hasattr(self, "offsets"):
                raise IndexError("the shard reader is closed")
            entry = self.entry
            layout = self._layout = column_layout(entry.column_names, entry.column_encodings)
        decoded = None if layout is None else layout.decode(self._buf, self._offs, indices)
        if decoded is None:
            # Lengths that do not add up or a corrupt value: decoding sample by sample names it.
            return self.get_many(indices)
        return decoded

    def get_bytes(self, index: int) -> bytes:
        """The stored blob of sample ``index``."""
        if not 0 <= index < self._num:
            raise IndexError(f"{self.source}: sample {index} out of range (shard has {self._num})")
        return bytes(self._buf[self._offs[index] : self._offs[index + 1]])

    def release_pages(self) -> None:
        """Drop this process's resident pages of the shard's mapping (see :mod:`astreaming.format.pages`)."""
        release_pages(self._buf)

    def close(self) -> None:
        """Release the mapping. Samples already returned stay valid (they are copies)."""
        buf = self._buf
        self.get_item = _closed
        self.get_many = _closed_many
        self.get_run = _closed_many
        if isinstance(self._offs, memoryview):
            self._offs.release()
        self._offs = ()
        self._num = 0
        del self.offsets
        self._layout = None
        self._buf = b""
        if isinstance(buf, mmap.mmap):
            # If someone still holds a view of the offsets array, the mapping closes when it is freed.
            with contextlib.suppress(BufferError):
                buf.close()

    def __enter__(self) -> MDSReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_reader(
    source: str,
    identity: FileIdentity,
    offs: Sequence[int],
    num: int,
    plan: DecodePlan,
    get_many: Callable[[Iterable[int]], list[dict[str, Any]]],
) -> Callable[[list[int]], list[dict[str, Any]]]:
    """``get_run`` of a mapped shard: the samples at ``indices``, as ``get_many`` returns them; a run whose
    samples lie next to each other in the file and span at least :data:`SPAN_READ_MIN` bytes is read
    with one ``pread`` of that span and decoded from the copy.

    Why not through the mapping: a mapped read takes a page fault for every 64 KB and the walk gives the
    pages back every 2 MB, and the pages mapped between two releases count in the resident set. One
    ``pread`` a run costs four system calls (open, fstat, pread, close) and a second copy, from the CPU
    cache. 10 KB samples, 64 a run: the side-by-side ``large`` epoch peaks 1.6 MB lower (6.7 against
    8.3 MB over ``import torch``) and takes 2,700 fewer page faults, at the same speed within this
    machine's noise (136k against 138k samples/s, medians of 10 alternating pairs:
    ``results/span_reads_s15.json``); alone (``benchmarks/read_segments.py``) 3.25 against 3.58 us a
    sample, and steadier under another job's load (2.9-3.3 against 2.8-12.6 us over 5 rounds).

    The file is opened by path for each run and used only if it is the file mapped (a shard evicted and
    downloaded again is another inode): otherwise, and for runs spread over the shard (more samples in
    the span than asked for), the mapping is read.
    """

    def get_run(indices: list[int]) -> list[dict[str, Any]]:
        count = len(indices)
        if count < 2:
            return get_many(indices)
        low, high = min(indices), max(indices)
        if low < 0 or high >= num or high - low >= count:
            return get_many(indices)  # out of range (it raises), or spread out
        base = offs[low]
        span = offs[high + 1] - base
        if span < SPAN_READ_MIN:
            return get_many(indices)
        data = _read_span(source, identity, base, span)
        if data is None:
            return get_many(indices)
        relative = [offs[i] - base for i in range(low, high + 2)]
        return plan.bind_many(data, relative)([i - low for i in indices])

    return get_run


def _read_span(source: str, identity: FileIdentity, base: int, span: int) -> bytes | None:
    """``span`` bytes from ``base`` of the file at ``source``, or None if it is no longer the file with
    ``identity`` (or is gone: the mapping still holds the one read).

    Raises:
        FormatError: the read failed or came back short (the file changed under the reader).
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != identity:
            return None
        data = os.pread(fd, span, base)
    except OSError as exc:
        raise FormatError(f"{source}: reading bytes {base}..{base + span}: {exc}") from exc
    finally:
        os.close(fd)
    if len(data) != span:
        raise FormatError(f"{source}: read {len(data)} of {span} bytes at {base}: the file was truncated")
    return data


#: A mapped shard's offsets table is copied into private memory when it is at most this share of the
#: file (and at most ``_COPY_MAX`` bytes): see :func:`_copy_offsets`.
_COPY_SHARE = 64
_COPY_MAX = 1 << 20


def _copy_offsets(buf: object, table_bytes: int) -> bool:
    """Whether to read a shard's offsets from a private copy rather than from its mapping.

    Every sample read looks its bounds up in the table at the head of the file, so read through the
    mapping that head stays resident, and the kernel maps cached file pages a large folio (up to 2 MB
    here) at a time: after each release of the walk's pages (``engine/readers.py``) the next sample
    maps the head's folio back besides the one holding the sample. A copy of a small table (4 bytes a
    sample) costs less than that folio; a table that is a large share of its file is left mapped (the
    folio holding it is mostly table, and a copy per open reader could add up).
    """
    return isinstance(buf, mmap.mmap) and table_bytes <= min(_COPY_MAX, len(buf) // _COPY_SHARE)


def _closed(index: int) -> dict[str, Any]:
    raise IndexError(f"sample {index}: the shard reader is closed")


def _closed_many(indices: Iterable[int]) -> list[dict[str, Any]]:
    raise IndexError("the shard reader is closed")


def map_file(path: str | Path, *, expected_size: int) -> mmap.mmap | bytes:
    """Map a whole file read-only (an empty file gives ``b""``, which mmap cannot map).

    Raises:
        FormatError: the file is missing, is not a regular file (a directory, a FIFO: opened without
            blocking, so a FIFO cannot hang the reader) or its size differs from ``expected_size``
            (naming the path).
    """
    return map_identified(path, expected_size=expected_size)[0]


def map_identified(path: str | Path, *, expected_size: int) -> tuple[mmap.mmap | bytes, FileIdentity]:
    """:func:`map_file`, and the identity (device, inode) of the file mapped: a reader that reads byte
    ranges by path checks that it reads that file (see :meth:`MDSReader.get_run`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FormatError(f"{path}: shard file not found") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a directory, not a shard file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise FormatError(f"{path}: is {kind}, not a shard file")
        size = info.st_size
        if size != expected_size:
            raise FormatError(f"{path}: file has {size} bytes but the index says {expected_size}")
        identity = (info.st_dev, info.st_ino)
        if size == 0:
            return b"", identity
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ), identity
    finally:
        os.close(fd)  # the mapping keeps its own reference to the file
