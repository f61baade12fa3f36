"""The exception tree of astreaming.

Every error astreaming raises on purpose derives from :class:`AstreamingError`. Each one also derives
from the builtin that mosaicml-streaming raises in the same situation (``FileNotFoundError`` for a
missing object, ``RuntimeError`` for a missing local index or an empty dataset, ``json.JSONDecodeError``
for an index that is not JSON, ``TypeError``/``AttributeError`` for a value an encoding cannot take,
``ValueError``, ``KeyError``), so both ``except FileNotFoundError`` and ``except ObjectNotFound`` work.
"""

from __future__ import annotations

import json


class AstreamingError(Exception):
    """Root of every error astreaming raises on purpose."""


class StorageError(AstreamingError):
    """A storage operation failed. ``url`` names the object, with credentials redacted."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ObjectNotFound(StorageError, FileNotFoundError):
    """The object does not exist (HTTP 404, NoSuchKey, missing file). Not retried.

    Also a ``FileNotFoundError``, which mosaic's downloaders raise for a missing object.
    """


class IndexNotFound(ObjectNotFound, RuntimeError):
    """A stream's ``index.json`` does not exist (remote, or the directory of a stream without remote).

    Also a ``RuntimeError``: mosaic raised that for a local-only stream without an index.
    """


class PermissionDenied(StorageError, PermissionError):
    """Access was refused (HTTP 401/403). Not retried. Also a ``PermissionError``."""


class TransientStorageError(StorageError):
    """A failure worth retrying: 5xx, 429, connection reset, timeout, short body."""

    def __init__(self, message: str, *, url: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, url=url)
        self.retry_after = retry_after


class FormatError(AstreamingError, ValueError):
    """A dataset file is malformed: bad index, bad shard, unknown encoding, hash mismatch."""


class HashMismatch(FormatError):
    """A file's digest differs from the one its index records."""


class ObjectChanged(FormatError):
    """A remote object was replaced while a job reads it: an answer reported another version (ETag,
    generation) than the one read before for the same shard. Not retried. ``url`` names the object."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class IndexJSONError(FormatError, json.JSONDecodeError):
    """An ``index.json`` is not JSON (empty, truncated). Also the ``json.JSONDecodeError`` mosaic raised."""

    def __init__(self, message: str, doc: str = "", pos: int = 0) -> None:
        json.JSONDecodeError.__init__(self, message, doc, pos)
        self.args = (message,)  # the message names the file; JSONDecodeError appends a position


class EmptyDatasetError(FormatError, RuntimeError):
    """An index lists no samples. Also the ``RuntimeError`` mosaic raised."""


class WrongValueType(FormatError, TypeError, AttributeError):
    """A sample value has a type its column's encoding cannot store.

    Also a ``TypeError`` and an ``AttributeError``: mosaic's encodings raised either.
    """


class CacheError(AstreamingError):
    """The local cache cannot hold what is needed (budget too small, disk full)."""


class ConfigError(AstreamingError, ValueError):
    """An argument is invalid. The message names the argument."""


class UnknownOptionError(ConfigError, KeyError):
    """An argument names an algorithm or method that does not exist (mosaic raised KeyError)."""

    def __str__(self) -> str:
        # KeyError.__str__ repr()s its argument; keep the plain message.
        return str(self.args[0]) if self.args else ""


__all__ = [
    "AstreamingError",
    "CacheError",
    "ConfigError",
    "EmptyDatasetError",
    "FormatError",
    "HashMismatch",
    "IndexJSONError",
    "IndexNotFound",
    "ObjectChanged",
    "ObjectNotFound",
    "PermissionDenied",
    "StorageError",
    "TransientStorageError",
    "UnknownOptionError",
    "WrongValueType",
]
