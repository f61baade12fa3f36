"""Where plan artefacts live: computed once, then shared (a protocol; the engine supplies a file store).

Plans at scale are made of a few named artefacts (py1e's draws, a window of a canonical node's order, a
whole permutation or epoch array for the algorithms that cannot be windowed). Each is a dict of arrays
named by a key that hashes everything it depends on, so processes that need the same artefact can share
one copy. ``order`` itself does no I/O: :class:`MemoryStore` keeps artefacts in this process, and the
engine passes a store backed by the cache directory (memory-mapped files published by atomic rename).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

import numpy as np

from astreaming.order.spec import EpochSpec

__all__ = ["Arrays", "MemoryStore", "PlanStore", "id_dtype", "plan_key"]

#: One artefact: named arrays.
Arrays = dict[str, np.ndarray]


class PlanStore(Protocol):
    """Artefacts by key, each computed at most once per store (and per node for a shared store)."""

    def get(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        """The artefact ``key``, computing it with ``compute`` if nobody has (arrays may be read-only)."""
        ...

    def discard(self, key: str) -> None:
        """Forget ``key`` (a consumer that still needs it computes it again)."""
        ...

    def peek(self, key: str) -> Arrays | None:
        """The artefact ``key`` if someone computed it, else None (never computes)."""
        ...


class MemoryStore:
    """A store private to this process (no sharing)."""

    def __init__(self) -> None:
        self._items: dict[str, Arrays] = {}

    def get(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        """The artefact ``key``, computed on first use."""
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = compute()
        return found

    def discard(self, key: str) -> None:
        """Drop ``key``."""
        self._items.pop(key, None)

    def peek(self, key: str) -> Arrays | None:
        """The artefact ``key`` if it was computed."""
        return self._items.get(key)


def id_dtype(largest: int) -> type[np.signedinteger]:
    """int32 when every id (and -1) fits, else int64: halves the bytes of a shared plan."""
    return np.int32 if largest < np.iinfo(np.int32).max else np.int64


#: Changes whenever an artefact's arrays change (names, meaning): plan files another version of
#: astreaming left in a shared plan directory then get other keys, instead of being read as this one's.
ARTEFACT_FORMAT = 2


def plan_key(kind: str, spec: EpochSpec, epoch: int, *extra: object) -> str:
    """A file-safe key for artefact ``kind`` that hashes every input of the epoch's order."""
    digest = hashlib.sha256(f"astreaming-plan-{ARTEFACT_FORMAT}|".encode())
    for sizes in spec.samples_per_shard:
        digest.update(np.ascontiguousarray(sizes, np.int64).tobytes())
        digest.update(b"|")
    fields = (
        spec.choose_per_stream,
        tuple(float(p).hex() for p in spec.proportion_per_stream),
        spec.num_canonical_nodes,
        spec.shuffle,
        spec.shuffle_algo,
        spec.shuffle_seed,
        spec.shuffle_block_size,
        spec.sampling_method,
        spec.sampling_granularity,
        epoch,
        extra,
    )
    digest.update(repr(fields).encode())
    return f"{kind}-{digest.hexdigest()[:32]}"
