"""A spy on ``os.pread``, for tests that check how a shard's bytes were read."""

from __future__ import annotations

import os

import pytest


def spy_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the ``os.pread`` calls made from now on (in this process)."""
    sizes: list[int] = []
    pread = os.pread

    def spy(fd: int, size: int, offset: int) -> bytes:
        sizes.append(size)
        return pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", spy)
    return sizes
