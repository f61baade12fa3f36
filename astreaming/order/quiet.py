"""The order's configuration warnings, which a plan computed only as a hint must not give.

A walk under a ``cache_limit`` looks up the first positions of the *next* epoch's plan (an eviction hint,
see ``engine/nextepoch.py``), on a thread of its own. That plan would repeat the warnings of its
configuration (a span larger than the shuffle block, a partition that repeats samples), which belong to
the next epoch's own plan when it starts. ``warnings.catch_warnings`` cannot silence them: it swaps the
process-wide filters, so on another thread it would also swallow the reading thread's warnings, and
two such blocks interleaving can leave the filters changed for good. :func:`quiet` is per thread.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

__all__ = ["quiet", "warn"]

_local = threading.local()


def warn(message: str, category: type[Warning] = UserWarning, *, stacklevel: int = 1) -> None:
    """``warnings.warn`` (``stacklevel`` counted from the caller), unless this thread is :func:`quiet`."""
    if getattr(_local, "quiet", False):
        return
    warnings.warn(message, category, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Within the block, this thread's plan computations give no configuration warnings."""
    before = getattr(_local, "quiet", False)
    _local.quiet = True
    try:
        yield
    finally:
        _local.quiet = before
