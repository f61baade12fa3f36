"""Which version of an object a download reads: the first answer pins it, every later one must match.

An object store reports a version token with every answer (S3's ETag, GCS's content hashes, Azure's
Content-MD5 or ETag, an HTTP server's strong ETag). A shard read in several requests (parallel byte ranges,
a retried part, the header and then a sample of a random access, a download again after ``cache_limit``
evicted it) is only one shard if every answer came from the same version: an object replaced by other
bytes of the same size meanwhile would otherwise be stitched together, or give samples of two datasets in
one job.

The caller holds a :class:`VersionPin` for the object and runs its backend calls inside :func:`pinned`; a
backend calls :func:`answered` with each answer's token once its headers are in, before any byte of it is
used. A context variable carries the pin from one to the other (as :mod:`astreaming.storage.firstbyte`
carries its watcher), so no signature changes; a backend that never calls :func:`answered`, or a server
that reports no token, leaves the object unpinned.

Two kinds of token. A *content* token changes with the bytes and only with them (GCS's hashes, Azure's
``Content-MD5``, a single-part unencrypted S3 ETag, which is the md5 of the bytes): another token is
another content, so a mismatch fails at the first answer, and nothing need be hashed. An *opaque* token
(an HTTP ETag, an Azure ETag, a multipart S3 ETag) also changes when the very same bytes are uploaded
again (a conversion rerun, a re-copy), which must not fail a job hours in. So a whole download whose pin
carries the record of an earlier one (``recorded``) with a digest of its bytes does not fail at a new
token: every part of it must still carry one token (never two versions stitched), and the caller compares
the digest of the bytes received with the recorded one afterwards (:attr:`VersionPin.deferred`). A range
read of a few bytes cannot be checked that way, so a pin without ``recorded`` is strict.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from astreaming.errors import ObjectChanged
from astreaming.storage.urls import redact

__all__ = ["Recorded", "VersionPin", "answered", "changed", "md5_of_base64", "pinned"]


@dataclass(frozen=True)
class Recorded:
    """What an earlier download recorded about an object.

    Attributes:
        token: The version token its answers carried.
        content: Whether ``token`` is a content token.
        digest: ``"<algo>:<hex>"`` of its bytes, when known (the store's md5 of a content token, or one
            computed over the bytes of an opaque one), else ``None``.
    """

    token: str
    content: bool = False
    digest: str | None = None


class VersionPin:
    """The version an object must have.

    Args:
        token: The token every answer must carry (``None``: the first answer's, whatever it is).
        recorded: For a whole download that will be verified by its bytes: what an earlier download
            recorded. A first answer of another token is then accepted when the two cannot be told apart
            by their tokens alone (see the module docstring); :attr:`deferred` says so.

    Attributes:
        token: The token of the answers (``None`` until an answer reported one).
        content: Whether ``token`` is a content token.
        md5: The md5 of the whole object (hex) the store reported with ``token``, if any.
        deferred: ``token`` differs from ``recorded.token`` and the bytes must decide (when it differs
            and this is ``False``, the store's md5 showed the same bytes).
    """

    def __init__(self, token: str | None = None, *, recorded: Recorded | None = None) -> None:
        self.token = token
        self.recorded = recorded
        self.content = False
        self.md5: str | None = None
        self.deferred = False


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


def changed(shown: str, before: str, now: str, why: str = "") -> ObjectChanged:
    """The error for an object read at version ``before`` and now at ``now`` (``shown``: its redacted URL)."""
    return ObjectChanged(
        f"{shown}: the object changed while this job reads it (version {before} was read before, now "
        f"{now}{why}): a dataset must not be rewritten in place while it is read; write the new version "
        "under another prefix (or clear the cache after the job)",
        url=shown,
    )


def answered(url: str, version: str | None, *, content: bool = False, md5: str | None = None) -> None:
    """A backend received an answer of ``version`` for ``url`` (call before using its body).

    Args:
        url: The object.
        version: The answer's token (``None``: the answer reported none, nothing is checked).
        content: ``version`` changes with the bytes and only with them.
        md5: The md5 (hex) of the whole object that the store reported, if any.

    Raises:
        ObjectChanged: the pin holds another version: the object was replaced since it was first read.
            Not retried (a retry would read the new version too).
    """
    pin = _pin.get()
    if pin is None or not version:
        return
    if pin.token is None:
        recorded = pin.recorded
        if recorded is not None and version != recorded.token:
            same = _same_bytes(recorded, content, md5)
            if same is False:
                raise changed(redact(url), recorded.token, version)
            pin.deferred = same is None
        pin.token, pin.content, pin.md5 = version, content, md5
    elif version != pin.token:
        raise changed(redact(url), pin.token, version)


def _same_bytes(recorded: Recorded, content: bool, md5: str | None) -> bool | None:
    """Whether an answer of another token than ``recorded`` has the same bytes: ``None`` when only the
    bytes can tell (there is a digest to compare them with); ``False`` for other bytes, and when there is
    no way to tell (refused: a false alarm names the object, a missed change mixes two datasets)."""
    if md5 is not None and recorded.digest is not None and recorded.digest.startswith("md5:"):
        return recorded.digest == f"md5:{md5}"  # the store vouches for both: decided without the bytes
    if recorded.content and content:
        return False  # two content tokens of another value: other bytes
    return None if recorded.digest is not None else False


def md5_of_base64(value: str | bytes | bytearray | None) -> str | None:
    """A store's base64 md5 (GCS's ``md5=``, Azure's ``Content-MD5``) or its raw 16 bytes, as hex."""
    if value is None:
        return None
    raw = bytes(value) if isinstance(value, (bytes, bytearray)) else None
    if raw is None or len(raw) != 16:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw.hex() if len(raw) == 16 else None
