"""Which version of an object a download reads: the first answer pins it, every later one must match.

An object store reports a version token with every answer (S3's ETag, GCS's content hashes, Azure's ETag,
an HTTP server's strong ETag). A shard read in several requests (parallel byte ranges, a retried part,
the header and then a sample of a random access, a download again after ``cache_limit`` evicted it) is
only one shard if every answer came from the same version: an object replaced by other bytes of the same
size meanwhile would otherwise be stitched together, or give samples of two datasets in one job.

The caller holds a :class:`VersionPin` for the object (empty, or the token recorded earlier) and runs its
backend calls inside :func:`pinned`; a backend calls :func:`answered` with each answer's token once its
headers are in, before any byte of it is used. A context variable carries the pin from one to the other
(as :mod:`astreaming.storage.firstbyte` carries its watcher), so no signature changes; a backend that never
calls :func:`answered`, or a server that reports no token, leaves the object unpinned.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from astreaming.errors import ObjectChanged
from astreaming.storage.urls import redact

__all__ = ["VersionPin", "answered", "pinned"]


class VersionPin:
    """The version an object must have: ``token`` (``None`` until an answer reported one)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token


_pin: contextvars.ContextVar[VersionPin | None] = contextvars.ContextVar(
    "astreaming_version_pin", default=None
)


@contextlib.contextmanager
def pinned(pin: VersionPin) -> Iterator[VersionPin]:
    """Hold the backend calls inside the block (and the tasks they start) to ``pin``'s version."""
    token = _pin.set(pin)
    try:
        yield pin
    finally:
        _pin.reset(token)


def answered(url: str, version: str | None) -> None:
    """A backend received an answer of ``version`` for ``url`` (call before using its body).

    Raises:
        ObjectChanged: the pin holds another version: the object was replaced since it was first read.
            Not retried (a retry would read the new version too).
    """
    pin = _pin.get()
    if pin is None or not version:
        return
    if pin.token is None:
        pin.token = version
    elif version != pin.token:
        raise ObjectChanged(
            f"{redact(url)}: the object changed while this job reads it (version {pin.token} was read "
            f"before, now {version}): a dataset must not be rewritten in place while it is read; write "
            "the new version under another prefix (or clear the cache after the job)",
            url=redact(url),
        )
