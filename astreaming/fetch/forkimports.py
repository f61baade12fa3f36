"""A fork never copies a half-imported module into the child.

torch's DataLoader forks its workers from the main thread while astreaming's own threads (the event
loop, and the executor threads that decompress, hash and write) may be importing a module on first use:
a codec (``zstandard``), ``xxhash``, a storage SDK's submodule. A fork at that instant copies the module
half executed: in the child it sits in ``sys.modules`` marked as initializing, its import lock held by a
thread that does not exist there. The child's import of it then returns the partial module
(``AttributeError: partially initialized module 'zstandard' has no attribute 'ZstdError'``) or waits for
that lock forever (a worker waiting for a shard whose decompression never gets past its import: a
golden iteration case with 2 forked workers hung this way in CI, on a stream of zstd shards whose first
decompression ran in the main process's lead batch while torch forked the workers).

Before every ``os.fork`` of the process, :func:`wait_for_imports` waits until no other thread holds a
module's import lock, bounded by :data:`WAIT` (then the fork goes ahead, as it would have). The forking
thread's own imports do not count: a fork made while importing (a module that starts workers at import
time) must not wait for itself. The locks are importlib's per-module locks
(``importlib._bootstrap._module_locks``, CPython 3.3+); without them, nothing is waited for.
"""

from __future__ import annotations

import importlib._bootstrap as _bootstrap
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection

__all__ = ["WAIT", "importing_elsewhere", "wait_for_imports"]

#: Longest a fork waits for another thread's import (an import takes milliseconds; one that waits for
#: the forking thread itself would never end).
WAIT = 10.0


def importing_elsewhere(ignore: Collection[str] = ()) -> list[str]:
    """Names of the modules another thread of this process is importing now (but those in ``ignore``)."""
    me = threading.get_ident()
    locks = getattr(_bootstrap, "_module_locks", None)
    if locks is None or not hasattr(locks, "items"):
        return []
    busy = []
    # Importing threads add and drop entries meanwhile. Up to 3.11 the values are weak references to the
    # locks; later versions keep them in a weak-value dictionary of their own, which yields the locks.
    for name, value in list(locks.items()):
        lock = value() if isinstance(value, weakref.ref) else value
        owner = getattr(lock, "owner", None)
        if owner is not None and owner != me and name not in ignore:
            busy.append(name)
    return busy


def wait_for_imports(
    wait: float | None = None,
    *,
    ignore: Collection[str] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until no other thread is importing (modules in ``ignore`` aside), at most ``wait`` seconds
    (:data:`WAIT`).

    Returns:
        Whether the imports finished in time.
    """
    deadline = clock() + (WAIT if wait is None else wait)
    delay = 0.0005
    while importing_elsewhere(ignore):
        if clock() >= deadline:
            return False
        sleep(delay)  # releases the GIL: the importing thread goes on
        delay = min(delay * 2, 0.01)
    return True


#: Imports that outlived a whole wait (a thread stuck in one): later forks do not wait for them again,
#: or every DataLoader worker's fork would cost :data:`WAIT`.
_stuck: set[str] = set()


def _before_fork() -> None:
    if not wait_for_imports(ignore=_stuck):
        _stuck.update(importing_elsewhere(_stuck))


os.register_at_fork(before=_before_fork)
