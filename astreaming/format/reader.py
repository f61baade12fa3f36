"""Open any shard from its index entry and a local directory.

For each file of the shard the raw file is mapped when present; otherwise the compressed file is
decompressed into memory (with the decompression-bomb guard: the output must be exactly
``raw_data.bytes``). Hashes are not checked here; callers that download files verify them (see
:func:`verify_file`), as mosaic does only on download.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any, Protocol

from astreaming.errors import FormatError
from astreaming.format.compression import get_compression
from astreaming.format.hashing import verify_hash
from astreaming.format.index import FileInfo, JSONEntry, MDSEntry, ShardEntry, XSVEntry
from astreaming.format.mds.reader import FileIdentity, MDSReader, map_identified
from astreaming.format.paths import join_basename

__all__ = ["ShardReader", "load_file", "open_shard", "verify_file"]


class ShardReader(Protocol):
    """What every shard reader offers."""

    source: str

    @property
    def samples(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def get_item(self, index: int) -> dict[str, Any]: ...

    def get_bytes(self, index: int) -> bytes: ...

    def release_pages(self) -> None: ...

    def close(self) -> None: ...


def load_file(
    root: str | Path, raw: FileInfo, zipped: FileInfo | None, compression: str | None
) -> mmap.mmap | bytes:
    """The raw bytes of one shard file: mapped if the raw file exists, else decompressed from the zip.

    Raises:
        FormatError: neither file exists, a size differs from the index, or decompression fails.
    """
    return load_identified(root, raw, zipped, compression)[0]


def load_identified(
    root: str | Path, raw: FileInfo, zipped: FileInfo | None, compression: str | None
) -> tuple[mmap.mmap | bytes, FileIdentity | None]:
    """:func:`load_file`, and the identity of the file mapped (``None`` for a decompressed shard)."""
    raw_path = join_basename(root, raw.basename)
    if raw_path.exists() or zipped is None:
        return map_identified(raw_path, expected_size=raw.bytes)
    zip_path = join_basename(root, zipped.basename)
    codec = get_compression(compression)
    if codec is None:  # parse_shard guarantees compression is set when zip_data is
        raise FormatError(f"{zip_path}: compressed file listed without a compression")
    try:
        packed = zip_path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{raw_path}: shard file not found (nor {zip_path.name})") from None
    except IsADirectoryError:
        raise FormatError(f"{zip_path}: is a directory, not a shard file") from None
    if len(packed) != zipped.bytes:
        raise FormatError(f"{zip_path}: file has {len(packed)} bytes but the index says {zipped.bytes}")
    return codec.decompress(packed, expected_size=raw.bytes, name=str(zip_path)), None


def open_shard(root: str | Path, entry: ShardEntry, *, allow_unsafe_types: bool = False) -> ShardReader:
    """Open the shard described by ``entry`` under the dataset directory ``root``.

    Raises:
        ConfigError: an MDS ``pkl`` column without ``allow_unsafe_types=True`` (before any file is read).
        FormatError: missing or malformed files.
    """
    source = str(join_basename(root, entry.raw_data.basename))
    if isinstance(entry, MDSEntry):
        plan = MDSReader.plan(entry, source=source, allow_unsafe_types=allow_unsafe_types)
        buf, identity = load_identified(root, entry.raw_data, entry.zip_data, entry.compression)
        return MDSReader(buf, entry, source=source, plan=plan, identity=identity)
    if isinstance(entry, (JSONEntry, XSVEntry)):
        # Imported here: these readers bring the text formats' writers with them (~0.2 MB resident),
        # which an MDS dataset never needs.
        from astreaming.format.jsonl import JSONReader
        from astreaming.format.xsv import XSVReader

        data = load_file(root, entry.raw_data, entry.zip_data, entry.compression)
        meta = bytes(load_file(root, entry.raw_meta, entry.zip_meta, entry.compression))
        if isinstance(entry, JSONEntry):
            return JSONReader(data, meta, entry, source=source)
        return XSVReader(data, meta, entry, source=source)
    raise FormatError(f"{source}: unsupported shard entry {type(entry).__name__}")


def verify_file(root: str | Path, info: FileInfo, algo: str) -> None:
    """Check one file against the digest its index records.

    Raises:
        FormatError: the index has no digest for ``algo``.
        HashMismatch: the digest differs (naming the file and algorithm).
    """
    expected = info.hashes.get(algo)
    path = join_basename(root, info.basename)
    if expected is None:
        raise FormatError(f"{path}: the index records no {algo!r} hash (has: {sorted(info.hashes)})")
    verify_hash(algo, expected, path=path, name=str(path))
