"""When a request's answer began to arrive: a backend says so, whoever watches the request hears it.

The time from sending a request to its first byte (the response headers) is what the request costs
before it moves any data: the link's round trip plus whatever the server spends before answering (a
server that copies the whole object first, a busy one queueing requests). The link gauge needs it to
size byte ranges, but a backend's ``read_range`` and ``download`` return only their bytes. So the caller
:func:`watch` es the call and the backend calls :func:`arrived` once the headers are in; a context
variable carries the watcher from one to the other (the same task), so no signature changes and a
backend that never calls :func:`arrived` just leaves the request unmeasured.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

__all__ = ["arrived", "watch"]

_watchers: contextvars.ContextVar[tuple[Callable[[], None], ...]] = contextvars.ContextVar(
    "astreaming_first_byte", default=()
)


@contextlib.contextmanager
def watch(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback()`` when a backend call inside the block receives its answer's headers (watchers
    nest: an outer one hears it too)."""
    token = _watchers.set((*_watchers.get(), callback))
    try:
        yield
    finally:
        _watchers.reset(token)


def arrived() -> None:
    """A backend received the headers of its answer (called on every attempt; the watchers keep the
    first or the last as they need)."""
    for callback in _watchers.get():
        callback()
