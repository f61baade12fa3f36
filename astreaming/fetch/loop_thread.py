"""One background event loop per process, in a daemon thread, created on first use.

Sync code (the ``for sample in ds`` iterator, ``ds[i]``, DataLoader workers) hands coroutines to this loop
and gets a :class:`concurrent.futures.Future` back, like anyio's blocking portal. The loop belongs to the
process that started it: after ``fork`` the child sees the parent's object but not its thread, so
:func:`get_loop_thread` notices the pid change and starts a fresh loop instead of reusing a dead one.
The thread is stopped and joined at interpreter exit (``atexit`` through a weak reference), and it is a
daemon so that a failure in that path can never keep the process alive.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from astreaming.fetch import forkimports  # noqa: F401 - registers its fork hook with the threads it guards

__all__ = ["LoopThread", "get_loop_thread"]

T = TypeVar("T")

#: How long stop() waits for pending tasks to unwind before giving up on them.
_STOP_GRACE = 5.0


class LoopThread:
    """An asyncio event loop running in its own daemon thread.

    Args:
        name: Thread name (shows in ``py-spy`` and thread dumps).
    """

    def __init__(self, name: str = "astreaming-loop") -> None:
        self.pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stopped = False
        self._lock = threading.Lock()
        # Closers of resources living on this loop (runtimes' HTTP sessions), run by stop() while the
        # loop still turns: stopped without them, those sessions would only be reported unclosed when
        # the garbage collector finds them, at a random later moment.
        self._closers: set[Callable[[], object]] = set()
        self._thread.start()
        self._started.wait()
        ref = weakref.ref(self)
        self._atexit = lambda: _stop_ref(ref)
        atexit.register(self._atexit)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._cancel_pending()
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def _cancel_pending(self) -> None:
        pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            gathered = asyncio.gather(*pending, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                self._loop.run_until_complete(asyncio.wait_for(gathered, _STOP_GRACE))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (only to pass to ``call_soon_threadsafe``-style APIs)."""
        return self._loop

    @property
    def alive(self) -> bool:
        """Whether the loop thread is running in this process."""
        return self.pid == os.getpid() and not self._stopped and self._thread.is_alive()

    @property
    def thread_ident(self) -> int | None:
        """``threading.get_ident()`` of the loop thread."""
        return self._thread.ident

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop thread itself."""
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future of its result."""
        self._check_usable(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block the calling thread until it returns (or raises).

        Raises:
            RuntimeError: Called from the loop thread itself (that would deadlock).
            TimeoutError: ``timeout`` elapsed; the coroutine is cancelled.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("LoopThread.call() from the loop thread would deadlock; await instead")
        future = self.run(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run the plain callable ``fn(*args)`` on the loop thread as soon as possible (fire and forget)."""
        self._check_usable(None)
        self._loop.call_soon_threadsafe(fn, *args)

    def _check_usable(self, coro: Coroutine[Any, Any, Any] | None) -> None:
        if self.pid != os.getpid():
            if coro is not None:
                coro.close()
            raise RuntimeError("this LoopThread belongs to the parent process; use get_loop_thread()")
        if self._stopped or not self._thread.is_alive():
            if coro is not None:
                coro.close()
            raise RuntimeError("the astreaming loop thread is stopped")

    def close_before_stop(self, closer: Callable[[], object]) -> None:
        """Have :meth:`stop` call ``closer()`` (from the stopping thread, the loop still running) first.

        ``closer`` must be idempotent and bounded (a :class:`weakref.finalize` that closes a resource on
        this loop, for example); ones that already ran are dropped.
        """
        with self._lock:
            self._closers = {c for c in self._closers if getattr(c, "alive", True)}
            self._closers.add(closer)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Run the closers, cancel pending tasks, stop the loop and join the thread.

        Idempotent; a no-op in a forked child.
        """
        with self._lock:
            if self._stopped:
                return
            closers, self._closers = list(self._closers), set()
        if self.pid == os.getpid() and not self.in_loop_thread():
            for closer in closers:
                with contextlib.suppress(Exception):  # stopping must go on whatever one closer does
                    closer()
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self._atexit)
        if self.pid != os.getpid():
            return  # the thread only exists in the parent
        if self.in_loop_thread():
            self._loop.stop()
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


def _stop_ref(ref: weakref.ReferenceType[LoopThread]) -> None:
    thread = ref()
    if thread is not None:
        thread.stop()


_current: LoopThread | None = None
_current_lock = threading.Lock()


def get_loop_thread() -> LoopThread:
    """The process's loop thread, started on first use (and again in a forked child)."""
    global _current
    current = _current
    if current is not None and current.alive:
        return current
    with _current_lock:
        if _current is None or not _current.alive:
            if _current is not None and _current.pid == os.getpid():
                _current.stop()
            _current = LoopThread()
        return _current


def _after_fork_in_child() -> None:
    # The parent's lock may have been held by another thread at fork time; the child gets fresh ones.
    global _current, _current_lock, _parked
    _current = None
    _current_lock = threading.Lock()
    _parked = None


#: Longest a fork waits for the loop thread to reach a safe point (it may be busy in a long call). On a
#: quiet machine it arrives in microseconds; on a 2-core machine at load 15, one second was not always
#: enough, and a fork that goes ahead while the loop thread is inside OpenSSL can leave the child stuck.
_PARK_TIMEOUT = 5.0
_parked: threading.Event | None = None


def _park_before_fork() -> None:
    """Hold the loop thread still (outside any library call) while another thread forks.

    A thread inside OpenSSL at the instant of ``fork`` (a TLS handshake or read on the loop thread) leaves
    OpenSSL's process-wide locks held in the child, where no thread will ever release them: the child's
    first SSL context (aiobotocore builds one for an https endpoint) then blocks forever. Parking the
    loop thread in a callback of ours during the fork means it holds no such lock. Bounded: if the loop
    does not reach the callback in time, the fork goes ahead as it would have.
    """
    global _parked
    current = _current
    if current is None or not current.alive or current.in_loop_thread():
        return
    arrived, resume = threading.Event(), threading.Event()

    def park() -> None:
        arrived.set()
        resume.wait(_PARK_TIMEOUT * 10)

    try:
        current.loop.call_soon_threadsafe(park)
    except RuntimeError:  # the loop closed meanwhile
        return
    if arrived.wait(_PARK_TIMEOUT):
        _parked = resume
    else:
        resume.set()  # too late: let the callback return at once whenever it runs


def _resume_after_fork_in_parent() -> None:
    global _parked
    resume, _parked = _parked, None
    if resume is not None:
        resume.set()


os.register_at_fork(
    before=_park_before_fork,
    after_in_parent=_resume_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
