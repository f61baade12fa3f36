"""A plan store for tests that records what the plan discards."""

from __future__ import annotations

from astreaming.order.store import MemoryStore


class CountingStore(MemoryStore):
    """A :class:`MemoryStore` that lists the keys discarded, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.discarded: list[str] = []

    def discard(self, key: str) -> None:
        """Record ``key``, then drop it."""
        self.discarded.append(key)
        super().discard(key)
