"""The exception tree of astreaming.

Every error astreaming raises on purpose derives from :class:`AstreamingError`. Errors about arguments
and data also derive from the builtin a mosaicml-streaming user already catches (``ValueError`` or
``KeyError``), so code written against ``streaming`` keeps working.
"""

from __future__ import annotations


class AstreamingError(Exception):
    """Root of every error astreaming raises on purpose."""


class StorageError(AstreamingError):
    """A storage operation failed. ``url`` names the object, with credentials redacted."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ObjectNotFound(StorageError):
    """The object does not exist (HTTP 404, NoSuchKey, missing file). Not retried."""


class PermissionDenied(StorageError):
    """Access was refused (HTTP 401/403). Not retried."""


class TransientStorageError(StorageError):
    """A failure worth retrying: 5xx, 429, connection reset, timeout, short body."""

    def __init__(self, message: str, *, url: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, url=url)
        self.retry_after = retry_after


class FormatError(AstreamingError, ValueError):
    """A dataset file is malformed: bad index, bad shard, unknown encoding, hash mismatch."""


class HashMismatch(FormatError):
    """A file's digest differs from the one its index records."""


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
    "FormatError",
    "HashMismatch",
    "ObjectNotFound",
    "PermissionDenied",
    "StorageError",
    "TransientStorageError",
    "UnknownOptionError",
]
