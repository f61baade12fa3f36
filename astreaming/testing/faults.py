"""The fault plan of :class:`~astreaming.testing.faultproxy.FaultProxy`: what to inject, and how to decide.

A :class:`FaultPlan` describes a link (latency, bandwidth) and the failures to inject at given rates
(error statuses, connection resets, truncated bodies, stalls, short bodies). :func:`decide` turns the
plan into the fate of one request. The decision depends only on the seed and a position:

- by default the position is the request's rank among the matched requests the proxy has seen, so
  the same sequence of requests gets the same faults run after run, whatever the objects are called
  (tests put them under random prefixes);
- with ``per_key=True`` it is the pair (``"METHOD path range"``, how many times that key was seen), so
  the same requests get the same faults even when a client sends them concurrently in a different
  interleaving.

Either way a retry of a failed request is a new position and gets a fresh draw.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING

from astreaming.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp.web import Request

__all__ = ["FaultDecision", "FaultKind", "FaultPlan", "FaultStats", "Pacer", "decide"]


class FaultKind(str, Enum):
    """What happens to one request."""

    NONE = "none"  # forwarded untouched (latency and bandwidth still apply)
    ERROR = "error"  # answered by the proxy with an error status; upstream never sees it
    RESET = "reset"  # connection reset (RST) part-way through the response body
    TRUNCATE = "truncate"  # body ends early and the connection closes; Content-Length is kept
    STALL = "stall"  # body pauses part-way for ``stall_seconds``, then continues
    SHORT = "short"  # body ends early but cleanly: Content-Length is lowered to match (a lying server)


@dataclass
class FaultPlan:
    """What the proxy injects. Every field is optional; the default plan forwards untouched.

    ``latency`` and ``bandwidth`` model the link and apply to every request. ``match``, when given,
    restricts the injected failures (error, reset, truncate, stall, short) to the requests it accepts, e.g.
    ``lambda r: r.method == "GET" and "shard" in r.path``.

    Attributes:
        latency: Seconds added to every request before its response starts.
        bandwidth: Cap on response-body bytes per second, shared by all connections (one link).
            ``None`` means no cap.
        connection_bandwidth: Cap on each response's body bytes per second (an HTTP/1.1 connection
            carries one response at a time: a per-connection cap), applied under ``bandwidth``. Object
            stores behave so: one connection gets a fraction of what many get together.
        error_rate: Fraction of matched requests answered with an error status.
        error_statuses: Statuses to choose from (uniformly) for an injected error.
        retry_after: Value of the ``Retry-After`` header sent with an injected 429 or 503.
        reset_rate: Fraction of matched responses whose connection is reset mid-body.
        truncate_rate: Fraction of matched responses whose body ends early (Content-Length kept).
        stall_rate: Fraction of matched responses whose body stalls mid-way.
        stall_seconds: How long a stall lasts before the body continues.
        short_rate: Fraction of matched responses whose body is cut short with a Content-Length that
            matches the cut: a complete-looking answer of the wrong length, which only a client that
            knows the object's size can notice.
        seed: Seed of every random decision.
        per_key: Decide by request key and its occurrence count instead of by arrival rank (stable
            under concurrent interleavings, but dependent on object names).
        match: Predicate restricting the failures to some requests; ``None`` matches all.
    """

    latency: float = 0.0
    bandwidth: float | None = None
    connection_bandwidth: float | None = None
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503, 429)
    retry_after: float | None = None
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    short_rate: float = 0.0
    seed: int = 0
    per_key: bool = False
    match: Callable[[Request], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("error_rate", "reset_rate", "truncate_rate", "stall_rate", "short_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"FaultPlan.{name} must be in [0, 1], got {rate!r}")
        body = self.reset_rate + self.truncate_rate + self.stall_rate + self.short_rate
        if body > 1.0 + 1e-9:
            raise ConfigError(
                f"FaultPlan.reset_rate + truncate_rate + stall_rate + short_rate must be <= 1, got {body!r}"
            )
        for name in ("latency", "stall_seconds"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ConfigError(f"FaultPlan.{name} must be a finite number >= 0, got {value!r}")
        for name in ("bandwidth", "connection_bandwidth"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"FaultPlan.{name} must be > 0 bytes/s or None, got {value!r}")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ConfigError(f"FaultPlan.retry_after must be >= 0 or None, got {self.retry_after!r}")
        if self.error_rate > 0 and not self.error_statuses:
            raise ConfigError("FaultPlan.error_statuses must not be empty when error_rate > 0")
        for status in self.error_statuses:
            if not 400 <= status <= 599:
                raise ConfigError(f"FaultPlan.error_statuses must hold 4xx/5xx statuses, got {status!r}")


@dataclass(frozen=True)
class FaultDecision:
    """The fate of one request.

    Attributes:
        kind: What is injected.
        status: The error status, for :attr:`FaultKind.ERROR`.
        cut: Where in the body a reset, truncation or stall happens, as a fraction of the body in [0, 1).
    """

    kind: FaultKind = FaultKind.NONE
    status: int = 0
    cut: float = 0.0


def decide(plan: FaultPlan, key: str, occurrence: int) -> FaultDecision:
    """Decide the fate of the ``occurrence``-th request (0-based) with this ``key`` under ``plan``.

    The proxy passes ``key=""`` and the arrival rank unless ``plan.per_key`` is set.

    The same four numbers are drawn for every request, whatever the rates, so the decision for one
    kind of fault does not shift when another rate changes.
    """
    # A str seed is hashed with SHA-512 by random.Random: stable across runs and Python versions,
    # unlike hash().
    rng = random.Random(f"{plan.seed}\x00{key}\x00{occurrence}")
    u_error, u_status, u_body, u_cut = rng.random(), rng.random(), rng.random(), rng.random()
    if u_error < plan.error_rate:
        status = plan.error_statuses[int(u_status * len(plan.error_statuses))]
        return FaultDecision(FaultKind.ERROR, status=status)
    # Cut somewhere in the middle 80% so some bytes arrive before, and some are missing after.
    cut = 0.1 + 0.8 * u_cut
    edge = plan.reset_rate
    if u_body < edge:
        return FaultDecision(FaultKind.RESET, cut=cut)
    edge += plan.truncate_rate
    if u_body < edge:
        return FaultDecision(FaultKind.TRUNCATE, cut=cut)
    edge += plan.stall_rate
    if u_body < edge:
        return FaultDecision(FaultKind.STALL, cut=cut)
    edge += plan.short_rate  # last, so adding it moves no other decision
    if u_body < edge:
        return FaultDecision(FaultKind.SHORT, cut=cut)
    return FaultDecision()


@dataclass
class FaultStats:
    """Counters of a proxy. Faults are counted when they actually happen (a truncation of an empty
    body does not).

    Attributes:
        requests: Requests received.
        forwarded: Requests forwarded upstream.
        errors: Injected error responses.
        resets: Connections reset mid-body.
        truncations: Bodies ended early.
        stalls: Bodies stalled.
        shorts: Bodies ended early with a matching (lowered) Content-Length.
        upstream_failures: Requests the upstream could not answer (answered 502 or aborted).
        bytes_sent: Response-body bytes sent to clients.
    """

    requests: int = 0
    forwarded: int = 0
    errors: int = 0
    resets: int = 0
    truncations: int = 0
    stalls: int = 0
    shorts: int = 0
    upstream_failures: int = 0
    bytes_sent: int = 0

    @property
    def faults(self) -> int:
        """All injected failures: errors, resets, truncations, stalls and short bodies."""
        return self.errors + self.resets + self.truncations + self.stalls + self.shorts

    def copy(self) -> FaultStats:
        """A snapshot of the counters."""
        return FaultStats(**{f.name: getattr(self, f.name) for f in fields(self)})


class Pacer:
    """Caps a byte rate. Each caller reserves the link for ``nbytes / rate`` seconds after the
    previous reservation and sleeps until its reservation ends, so concurrent callers share the rate
    (one :class:`Pacer` = one link). Single event loop only.

    Args:
        rate: Bytes per second.
        burst: Seconds of idle link that may be banked. Without it, the time a sender spends between
            chunks (reading upstream, writing) would be lost on every chunk and a single stream would
            fall well short of ``rate``; with it, an idle link still cannot send more than
            ``rate * burst`` bytes at once.
        clock: Monotonic clock.
        sleep: Coroutine function that sleeps (injectable, like the clock, for tests).
    """

    def __init__(
        self,
        rate: float,
        burst: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._next_free = 0.0

    async def consume(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more bytes fit under the rate."""
        now = self._clock()
        start = max(now - self.burst, self._next_free)
        self._next_free = start + nbytes / self.rate
        delay = self._next_free - now
        if delay > 0:
            await self._sleep(delay)
