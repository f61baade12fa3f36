"""mosaicml-streaming's spellings for names that do not fit astreaming's own layout.

A script written for ``streaming`` 0.13 keeps working after changing its imports to this module (the
README's migration section lists each name and its astreaming equivalent)::

    from astreaming.compat import CloudUploader, download_file, get_compression, _encodings, Encoding

Everything here is a thin layer over astreaming's own API; new code should use that directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from astreaming._units import bytes_to_int, number_abbrev_to_int
from astreaming.array import Array
from astreaming.engine.args import register_stream, streams_registry
from astreaming.errors import WrongValueType
from astreaming.format.codecs import (
    Brotli,
    Bzip2,
    Gzip,
    Snappy,
    Zstandard,
    compression_from_name,
    compression_registry,
)
from astreaming.format.compression import Compression, compression_names
from astreaming.format.hashing import hash_bytes, hash_names
from astreaming.format.mds.custom import MDSEncoding
from astreaming.format.mds.encodings import (
    encoding_names,
    encodings_registry,
    get_encoding,
    is_encoding,
)
from astreaming.output.merge import merge_index
from astreaming.output.transfer import download_file, list_objects, upload
from astreaming.spanner import Spanner
from astreaming.storage import join

__all__ = [
    "Array",
    "Brotli",
    "Bytes",
    "Bzip2",
    "CloudUploader",
    "Encoding",
    "Float16",
    "Float32",
    "Float64",
    "Gzip",
    "Int",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "JSON",
    "NDArray",
    "Pickle",
    "Snappy",
    "Spanner",
    "Str",
    "StrDecimal",
    "StrFloat",
    "StrInt",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Zstandard",
    "_encodings",
    "bytes_to_int",
    "clean_stale_shared_memory",
    "compress",
    "compression_registry",
    "decompress",
    "download_file",
    "get_compression",
    "get_compression_extension",
    "get_compressions",
    "get_hash",
    "get_hashes",
    "get_mds_encoded_size",
    "get_mds_encodings",
    "is_compression",
    "is_hash",
    "is_mds_encoding",
    "is_mds_encoding_safe",
    "mds_decode",
    "mds_encode",
    "merge_index",
    "number_abbrev_to_int",
    "register_stream",
    "streams_registry",
]

# -- MDS encodings (streaming.base.format.mds.encodings) ---------------------------------------------

#: mosaic's ``Encoding`` base class of user encodings.
Encoding = MDSEncoding
#: mosaic's registry of encodings: ``_encodings["mine"] = MyEncoding`` registers a user encoding.
_encodings = encodings_registry


def get_mds_encodings() -> set[str]:
    """Every encoding name: the built-in ones and those registered."""
    return {*encoding_names(), *encodings_registry}


def is_mds_encoding(encoding: str) -> bool:
    """Whether ``encoding`` is a valid column encoding (never raises, unlike mosaic's)."""
    return is_encoding(encoding)


def is_mds_encoding_safe(encoding: str) -> bool:
    """Whether reading ``encoding`` runs no pickle (everything but ``pkl``)."""
    return not get_encoding(encoding).unsafe


def get_mds_encoded_size(encoding: str) -> int | None:
    """Bytes of every value of a fixed-size encoding, else ``None``."""
    return get_encoding(encoding).size


def mds_encode(encoding: str, obj: Any) -> bytes:
    """Encode ``obj``; ``bytes`` pass through unchanged whatever the encoding (as in mosaic)."""
    return get_encoding(encoding).encode(obj)


def mds_decode(encoding: str, data: bytes) -> Any:
    """Decode one stored value."""
    return get_encoding(encoding).decode(data)


class _Builtin(MDSEncoding):
    """A built-in encoding as mosaic's class of that name: refuses ``bytes`` unless it is ``Bytes``.

    (Only :func:`mds_encode` and the writers pass pre-encoded ``bytes`` through.)
    """

    spec = ""

    def __init__(self) -> None:
        self._impl = get_encoding(self.spec)
        self.size = self._impl.size

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, bytes) and self.spec != "bytes":
            raise WrongValueType(f"MDS {type(self).__name__} encoding expects no bytes, got {obj!r:.80}")
        return self._impl.encode(obj)

    def decode(self, data: bytes) -> Any:
        return self._impl.decode(data)


class Bytes(_Builtin):
    spec = "bytes"


class Str(_Builtin):
    spec = "str"


class Int(_Builtin):
    spec = "int"


class Int8(_Builtin):
    spec = "int8"


class Int16(_Builtin):
    spec = "int16"


class Int32(_Builtin):
    spec = "int32"


class Int64(_Builtin):
    spec = "int64"


class UInt8(_Builtin):
    spec = "uint8"


class UInt16(_Builtin):
    spec = "uint16"


class UInt32(_Builtin):
    spec = "uint32"


class UInt64(_Builtin):
    spec = "uint64"


class Float16(_Builtin):
    spec = "float16"


class Float32(_Builtin):
    spec = "float32"


class Float64(_Builtin):
    spec = "float64"


class StrInt(_Builtin):
    spec = "str_int"


class StrFloat(_Builtin):
    spec = "str_float"


class StrDecimal(_Builtin):
    spec = "str_decimal"


class JSON(_Builtin):
    spec = "json"


class Pickle(_Builtin):
    spec = "pkl"


class NDArray(_Builtin):
    """``ndarray`` with an optional static dtype and shape (``NDArray("int32", (3, 4))``)."""

    def __init__(self, dtype: str | None = None, shape: tuple[int, ...] | None = None) -> None:
        parts = ["ndarray"]
        if dtype is not None:
            parts.append(dtype)
        if shape is not None:
            parts.append(",".join(str(d) for d in shape))
        self.spec = ":".join(parts)
        super().__init__()


# -- compression (streaming.base.compression) ----------------------------------------------------------


def get_compression(algo: str | None) -> Compression | None:
    """The compression object of ``"zstd"``, ``"zstd:7"``... (a registered family's class), or None."""
    return None if algo is None else compression_from_name(algo)


def get_compressions() -> set[str]:
    """Every valid compression name (each family, and ``family:level`` for each level)."""
    return set(compression_names())


def is_compression(algo: str | None) -> bool:
    """Whether ``algo`` is None or a valid compression name."""
    return algo is None or algo in get_compressions()


def get_compression_extension(algo: str) -> str:
    """The file suffix of a compression without the dot (``"zstd"``, ``"gz"``...)."""
    codec = get_compression(algo)
    assert codec is not None
    return codec.extension.lstrip(".")


def compress(algo: str | None, data: bytes) -> bytes:
    """Compress ``data`` (``algo=None`` returns it unchanged)."""
    codec = get_compression(algo)
    return data if codec is None else codec.compress(data)


def decompress(algo: str | None, data: bytes) -> bytes:
    """Decompress ``data`` (``algo=None`` returns it unchanged)."""
    codec = get_compression(algo)
    return data if codec is None else codec.decompress(data)


# -- hashes (streaming.base.hashing) -------------------------------------------------------------------


def get_hashes() -> set[str]:
    """Every supported hash algorithm name."""
    return set(hash_names())


def is_hash(algo: str) -> bool:
    """Whether ``algo`` is a supported hash algorithm."""
    return algo in hash_names()


def get_hash(algo: str, data: bytes) -> str:
    """The hex digest of ``data`` under ``algo``."""
    return hash_bytes(algo, data)


# -- utilities (streaming.base.util) -------------------------------------------------------------------


def clean_stale_shared_memory() -> None:
    """Does nothing: astreaming uses no POSIX shared memory, so nothing can leak (kept for old scripts)."""


# -- storage (streaming.base.storage) ------------------------------------------------------------------


class CloudUploader:
    """mosaic's ``CloudUploader``: a local directory mirrored to a remote one, file by file.

    Build it with :meth:`get`. ``upload_file(name)`` uploads ``local/name`` to ``remote/name`` at once
    (blocking) on astreaming's async backends, then deletes the local file unless ``keep_local``.

    Attributes:
        local: The local directory (a new temporary directory when ``out`` is a remote URL).
        remote: The remote directory URL, or None when ``out`` is a local directory.
    """

    def __init__(
        self,
        out: str | tuple[str, str],
        keep_local: bool = False,
        progress_bar: bool = False,
        retry: int = 2,
        exist_ok: bool = False,
    ) -> None:
        del progress_bar  # uploads are not shown per file here; kept for the signature
        self.local: str
        self.remote: str | None
        if isinstance(out, tuple):
            self.local, self.remote = out
        elif _is_url(out):
            self.local, self.remote = tempfile.mkdtemp(prefix="astreaming-upload-"), out
        else:
            self.local, self.remote = out, None
        if os.path.isdir(self.local) and os.listdir(self.local) and not exist_ok:
            raise FileExistsError(f"CloudUploader: directory {self.local!r} is not empty (exist_ok=False)")
        os.makedirs(self.local, exist_ok=True)
        self.keep_local = keep_local
        self.retry = retry

    @classmethod
    def get(
        cls,
        out: str | tuple[str, str],
        keep_local: bool = False,
        progress_bar: bool = False,
        retry: int = 2,
        exist_ok: bool = False,
    ) -> CloudUploader:
        """mosaic's factory; one class serves every scheme here."""
        return cls(out, keep_local, progress_bar, retry, exist_ok)

    def upload_file(self, filename: str) -> None:
        """Upload ``local/filename`` to ``remote/filename`` (``retry`` attempts), then maybe delete it.

        Raises:
            ObjectNotFound: the local file does not exist.
            StorageError: the upload failed after its attempts.
        """
        path = os.path.join(self.local, filename)
        if self.remote is None:
            return
        upload(path, join(self.remote, filename.replace(os.sep, "/")), retry=max(self.retry - 1, 0))
        if not self.keep_local:
            os.remove(path)

    def list_objects(self, prefix: str | None = None) -> list[str]:
        """Object URLs under ``remote`` (optionally ``remote/prefix``); local files without a remote."""
        if self.remote is None:
            root = os.path.join(self.local, prefix or "")
            return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)
        return list_objects(join(self.remote, prefix) if prefix else self.remote)

    def clear_local(self, local: str) -> None:
        """Delete ``local`` unless ``keep_local``."""
        if not self.keep_local:
            if os.path.isdir(local):
                shutil.rmtree(local, ignore_errors=True)
            elif os.path.exists(local):
                os.remove(local)


def _is_url(out: str) -> bool:
    scheme, sep, _ = out.partition("://")
    return bool(sep) and scheme != "file"
