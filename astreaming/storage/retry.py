"""Retries with exponential backoff and full jitter, and a timeout on every attempt.

Semantics of mosaic's ``download_retry`` (decided here, documented for users): it counts *retries after
the first attempt*, as mosaic's docs say, so ``RetryPolicy.attempts == 1 + download_retry``.
``download_retry=0`` means exactly one attempt (mosaic 0.13 crashed on 0, reference hazard 25), and the
default ``download_retry=2`` means up to three attempts, the same number of tries mosaic made.

``download_timeout`` bounds EVERY attempt on every backend (mosaic only passed it to S3 as a socket
read timeout): each attempt runs under ``asyncio.timeout(policy.timeout)``, so a download that gives up
does so within ``timeout * attempts`` plus the backoff sleeps.

A complete-looking answer of the wrong length (:class:`WrongLength`: the index or the range asked for
says otherwise) is retried too: a hop that cuts a body and lowers its Content-Length to match looks just
like that. If the last attempt still has the wrong length, the object itself differs from what the index
lists, and the error is a :class:`~astreaming.errors.FormatError` (the data, not the link, is at fault).

Only :class:`~astreaming.errors.TransientStorageError` (and a timeout) is retried. ``ObjectNotFound``,
``PermissionDenied``, ``ConfigError`` and any other exception propagate at once. A transient error that
carries ``retry_after`` (HTTP 429/503 ``Retry-After``) waits at least that long before the next attempt.

The clock and the sleep are injectable (trio's ``MockClock`` idea) so tests never really wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from astreaming.errors import ConfigError, FormatError, TransientStorageError
from astreaming.storage.urls import redact

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class RetryStats:
    """Counters of :func:`with_retries`, shared by all calls that receive the same object.

    Attributes:
        calls: Operations started.
        attempts: Attempts made (first tries and retries).
        retries: Attempts that were retries (``attempts - calls`` for finished calls).
        timeouts: Attempts cut off by the per-attempt timeout.
        failures: Operations that failed after their last attempt (or with a non-retryable error).
        slept: Total seconds spent in backoff sleeps.
    """

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    failures: int = 0
    slept: float = 0.0


class WrongLength(TransientStorageError):
    """An answer that ended cleanly with another length than expected (retried; see the module doc)."""


async def _real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, how long and how far apart to try a storage operation.

    Args:
        attempts: Total attempts, at least 1 (``1 + download_retry``; see :meth:`from_download_retry`).
        base: Backoff scale in seconds: retry ``n`` (1-based) waits up to ``min(cap, base * 2**(n-1))``.
        cap: Upper bound of one backoff sleep in seconds.
        jitter: ``"full"`` draws the sleep uniformly from ``[0, bound]`` (AWS "full jitter", which spreads
            out synchronized clients); ``"none"`` sleeps exactly ``bound``.
        timeout: Seconds one attempt may take (``download_timeout``); ``None`` for no bound.
        max_retry_after: Upper bound in seconds on a server's ``Retry-After`` (a bogus hour-long value
            must not stall training).
        clock: Monotonic clock, for elapsed-time reporting.
        sleep: Coroutine function used for backoff sleeps.
        rng: Random source for jitter (seed it for reproducible tests).
        deadline: Makes an attempt's deadline from ``timeout`` (``None``: ``asyncio.timeout``); the context
            it returns raises ``TimeoutError`` when the attempt's time is up. Tests inject one that
            expires on an event instead of real time.
    """

    attempts: int = 3
    base: float = 0.5
    cap: float = 30.0
    jitter: Literal["full", "none"] = "full"
    timeout: float | None = 60.0
    max_retry_after: float = 120.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = _real_sleep
    rng: random.Random = field(default_factory=random.Random)
    deadline: Callable[[float], AbstractAsyncContextManager[object]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"attempts must be an integer >= 1, got {self.attempts!r}")
        if self.base < 0 or self.cap < 0 or self.max_retry_after < 0:
            raise ConfigError("base, cap and max_retry_after must be >= 0")
        if self.jitter not in ("full", "none"):
            raise ConfigError(f"jitter must be 'full' or 'none', got {self.jitter!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"download_timeout must be > 0 seconds, got {self.timeout!r}")

    @classmethod
    def from_download_retry(
        cls, download_retry: int = 2, download_timeout: float | None = 60.0, **kwargs: object
    ) -> RetryPolicy:
        """The policy for mosaic-style arguments: ``attempts = 1 + download_retry``.

        Raises:
            ConfigError: ``download_retry`` is negative or not an integer, or ``download_timeout`` <= 0.
        """
        if isinstance(download_retry, bool) or not isinstance(download_retry, int) or download_retry < 0:
            raise ConfigError(f"download_retry must be an integer >= 0, got {download_retry!r}")
        return cls(attempts=1 + download_retry, timeout=download_timeout, **kwargs)  # type: ignore[arg-type]

    def backoff(self, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based), before any Retry-After."""
        bound = min(self.cap, self.base * (2.0 ** (retry - 1)))
        return self.rng.uniform(0.0, bound) if self.jitter == "full" else bound

    def delay(self, retry: int, error: TransientStorageError) -> float:
        """Sleep before ``retry``: the backoff, or the server's ``Retry-After`` if that is longer."""
        wait = self.backoff(retry)
        if error.retry_after is not None:
            wait = max(wait, min(float(error.retry_after), self.max_retry_after))
        return wait


async def _attempt(op: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    timeout = policy.timeout
    if timeout is None:
        return await op()
    if policy.deadline is not None:
        async with policy.deadline(timeout):
            return await op()
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await op()
    return await asyncio.wait_for(op(), timeout)  # pragma: no cover - Python 3.10


async def with_retries(
    policy: RetryPolicy,
    op: Callable[[], Awaitable[T]],
    *,
    url: str,
    stats: RetryStats | None = None,
    what: str = "request",
) -> T:
    """Run ``op()`` until it succeeds, retrying transient failures as ``policy`` says.

    ``op`` must start a fresh attempt each time it is called (a new request, a new ``.part`` file):
    :meth:`Backend.download` already cleans up after a failed attempt, so it can be retried as is::

        n = await with_retries(policy, lambda: backend.download(url, dest), url=url, stats=stats)

    Args:
        policy: Attempts, backoff, per-attempt timeout, clock and sleep.
        op: Zero-argument coroutine function performing one attempt.
        url: The object's URL, for messages (redacted here).
        stats: Counters to update; pass the same object to aggregate over many calls.
        what: Short name of the operation for messages ("download", "read").

    Returns:
        What the successful attempt returned.

    Raises:
        TransientStorageError: Every attempt failed transiently or timed out; the message names the URL,
            the attempt count and the last error, which is chained as ``__cause__``.
        StorageError: A non-retryable storage error (ObjectNotFound, PermissionDenied), at once.
    """
    stats = stats if stats is not None else RetryStats()
    shown = redact(url)
    stats.calls += 1
    started = policy.clock()
    last: TransientStorageError | None = None
    for attempt in range(1, policy.attempts + 1):
        if attempt > 1:
            assert last is not None
            wait = policy.delay(attempt - 1, last)
            # The error message already names the (redacted) URL.
            log.warning(
                "%s retry %d/%d in %.2f s after: %s", what, attempt - 1, policy.attempts - 1, wait, last
            )
            stats.retries += 1
            stats.slept += wait
            await policy.sleep(wait)
        stats.attempts += 1
        try:
            return await _attempt(op, policy)
        except TransientStorageError as e:
            last = e
        except TimeoutError as e:
            # Either our per-attempt deadline fired or a client raised its own timeout; both are transient.
            # (An outer cancellation arrives as CancelledError, which is never caught here.)
            stats.timeouts += 1
            last = TransientStorageError(
                f"{shown}: {what} attempt timed out after {policy.timeout} s (download_timeout)", url=shown
            )
            last.__cause__ = e
        except BaseException:
            stats.failures += 1
            raise
    stats.failures += 1
    elapsed = policy.clock() - started
    assert last is not None
    message = f"{shown}: {what} failed after {policy.attempts} attempt(s) in {elapsed:.2f} s: {last}"
    if isinstance(last, WrongLength):
        # Every retry was spent and the last answer was still complete but of the wrong length.
        raise FormatError(
            f"{message}; the object differs from what the index lists (rewritten since?): "
            "write the dataset's index again, or restore the object"
        ) from last
    raise TransientStorageError(message, url=shown, retry_after=last.retry_after) from last


__all__ = ["RetryPolicy", "RetryStats", "WrongLength", "with_retries"]
