"""Settle the version of a whole download against what the cache recorded: record, verify, or refuse.

The first whole download of a file records its token (:mod:`astreaming.cache.versionpins`) with a digest
of its bytes: the store's md5 when it reported one (free), else, for an opaque token only, a digest the
loader computes over the file just written (``DIGEST``, xxh3_128: 3.6 GB/s from a just-written file on
the 2-core build machine at load 8.6, against 0.22 GB/s for md5, 0.25 for blake2b, 0.52 for sha256 and
1.3 for zlib.crc32, which at 32 bits is too short to tell versions apart; ``benchmarks/digest_speed.py``,
``benchmarks/results/digest-speed-s11.json``). It runs in a thread, after the download, once per file and
process (about 20 ms for a 64 MB shard). Content tokens are never hashed by the loader.

A later download (after an eviction, or by another process of the cache) that got another token reached
here only if its bytes may still be the recorded ones (:func:`astreaming.storage.versions.answered`
refuses the rest at the first answer): its bytes are hashed and compared, and when they match the new
token is recorded, so the next download is fast again. Every part of one download carried one token
either way, so no file of two versions is ever hashed, let alone published.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from astreaming.cache.versionpins import PinEntry, VersionPins
from astreaming.format.hashing import new_hasher
from astreaming.storage import versions
from astreaming.storage.partfile import settle
from astreaming.storage.versions import Recorded, VersionPin

__all__ = ["DIGEST", "pin_for", "settle_whole"]

#: The digest kept with an opaque token.
DIGEST = "xxh3_128"
_CHUNK = 1 << 20


def pin_for(entry: PinEntry | None) -> VersionPin:
    """The pin of a whole download of a file whose record is ``entry`` (``None``: no record yet)."""
    if entry is None:
        return VersionPin()
    return VersionPin(recorded=Recorded(entry.token, entry.content, entry.digest))


def _digest_file(algo: str, path: Path) -> str:
    hasher = new_hasher(algo)
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while n := file.readinto(buffer):
            hasher.update(view[:n])
    return f"{algo}:{hasher.hexdigest()}"


async def _digest(algo: str, path: Path) -> str:
    # Waited for to its end even when cancelled: the caller deletes the file after.
    return await settle(asyncio.ensure_future(asyncio.to_thread(_digest_file, algo, path)))


async def settle_whole(
    pins: VersionPins, basename: str, entry: PinEntry | None, pin: VersionPin, path: Path, shown: str
) -> None:
    """Check and record the version of the whole download of ``basename`` just written to ``path``.

    Args:
        pins: The cache's records.
        basename: The file.
        entry: Its record before the download (what :func:`pin_for` was given).
        pin: The pin the download ran under.
        path: The downloaded bytes.
        shown: The file's URL as errors show it.

    Raises:
        ObjectChanged: the bytes are not the recorded ones (naming the URL, both tokens and both
            digests), or another process recorded another version first.
    """
    token = pin.token
    if token is None:
        return  # the store reports no version: nothing to pin
    store_md5 = f"md5:{pin.md5}" if pin.md5 else None
    if entry is None:
        digest = store_md5 if store_md5 or pin.content else await _digest(DIGEST, path)
        mine = PinEntry(token, pin.content, digest)
        first = pins.record(basename, mine)
        if first is not None and first.token != token:
            await _same_bytes(first, mine, path, shown)
        return
    if token == entry.token:
        if entry.digest is None and not entry.content:
            # Recorded by a range read (no bytes to hash then), or by session 10 (the token alone): the
            # next new token can be verified.
            digest = store_md5 if store_md5 or pin.content else await _digest(DIGEST, path)
            pins.put(basename, PinEntry(token, pin.content, digest))
        return
    if pin.deferred:
        assert entry.digest is not None  # answered() defers only then
        await _same_bytes(entry, PinEntry(token, pin.content, store_md5), path, shown)
    # The same bytes under a new token (a conversion rerun, a re-copy): the next download compares tokens.
    pins.put(basename, PinEntry(token, pin.content, store_md5 or entry.digest))


async def _same_bytes(before: PinEntry, now: PinEntry, path: Path, shown: str) -> None:
    if before.digest is None:
        raise versions.changed(shown, before.token, now.token)
    algo = before.digest.partition(":")[0]
    got = now.digest if now.digest and now.digest.startswith(f"{algo}:") else await _digest(algo, path)
    if got != before.digest:
        raise versions.changed(
            shown, before.token, now.token, f"; the bytes differ: {before.digest} then, {got} now"
        )
