"""numpy's bounded integer draws, replayed from a PCG64 state without a Python call into numpy per draw.

A py1e pass draws, per span, one ``integers(low, high)`` and then the span's uniforms, which take exactly
one 64-bit output each. Calling numpy for the integer and then skipping the uniforms (a state read, an
``advance``, a state write to keep the buffered 32-bit half) cost about 20 µs a span: 0.2 s of the pass
at 100M samples. :class:`DrawCursor` instead walks positions in the generator's output stream: skipping
uniforms only moves its position, and an integer reads the one output it needs (``advance`` then
``random_raw``) and applies numpy's own bounded-integer algorithm to it in Python ints.

The algorithm is numpy's (``random_bounded_uint64_fill`` in ``distributions.c``), as numpy 1.17+ and 2.x
apply it for a scalar ``Generator.integers(low, high)`` with the default ``int64`` dtype: with
``rng = high - low - 1``, nothing is drawn when ``rng == 0``; up to ``2**32 - 1`` the 32-bit path takes
``next_uint32`` values (PCG64 hands out the low half of a 64-bit output and keeps the high half for the
next call), ``rng == 2**32 - 1`` takes one as it is, smaller ranges use Lemire's multiply-and-reject;
above, the 64-bit path does the same with 64-bit outputs (its ``rng == 2**64 - 1`` case is out of
``int64``'s reach). ``tests/order/test_draw_cursor.py`` checks it
against ``Generator.integers`` from states with and without a buffered half, in every branch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["DrawCursor"]

_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1


class DrawCursor:
    """A position in a PCG64's output stream, read forward, with its ``next_uint32`` buffer.

    It moves ``bitgen`` (leaving its buffered half out of date) until :meth:`settle` puts the generator
    exactly where the draws walked would have left it.
    """

    def __init__(self, bitgen: np.random.PCG64) -> None:
        state = bitgen.state
        self.bitgen = bitgen
        self.has_uint32 = int(state["has_uint32"])
        self.uinteger = int(state["uinteger"])
        #: 64-bit outputs taken since the start (draws walked and skipped).
        self.position = 0
        self._at = 0  # outputs ``bitgen`` has actually produced or advanced past since the start

    def skip(self, draws: int) -> None:
        """Pass over ``draws`` 64-bit outputs (uniforms, ``random``): they do not touch the 32-bit buffer."""
        self.position += draws

    def _next64(self) -> int:
        if self.position > self._at:
            self.bitgen.advance(self.position - self._at)
        value = int(self.bitgen.random_raw())
        self.position += 1
        self._at = self.position
        return value

    def _next32(self) -> int:
        if self.has_uint32:
            self.has_uint32 = 0
            return self.uinteger
        value = self._next64()
        self.has_uint32, self.uinteger = 1, value >> 32
        return value & _M32

    def integers(self, low: int, high: int) -> int:
        """What ``Generator.integers(low, high)`` returns from this position, and move past its draws.

        Raises:
            ValueError: if ``low >= high`` (as numpy does).
        """
        if high <= low:
            raise ValueError("low >= high")
        rng = high - low - 1
        if rng == 0:
            return low
        if rng < _M32:
            return low + _lemire(self._next32, rng, 32, _M32)
        if rng == _M32:
            return low + self._next32()
        return low + _lemire(self._next64, rng, 64, _M64)

    def settle(self) -> None:
        """Leave ``bitgen`` exactly where the draws walked leave it: position and buffered half."""
        if self.position > self._at:
            self.bitgen.advance(self.position - self._at)
            self._at = self.position
        state = dict(self.bitgen.state)
        state["has_uint32"], state["uinteger"] = self.has_uint32, self.uinteger
        self.bitgen.state = state  # type: ignore[assignment]  # numpy's stub: a TypedDict of the same keys


def _lemire(take: Callable[[], int], rng: int, bits: int, mask: int) -> int:
    """Lemire's bounded draw in ``[0, rng]`` from ``bits``-bit values (numpy's ``bounded_lemire``)."""
    rng_excl = rng + 1
    m = take() * rng_excl
    leftover = m & mask
    if leftover < rng_excl:
        threshold = (mask - rng) % rng_excl
        while leftover < threshold:
            m = take() * rng_excl
            leftover = m & mask
    result: int = m >> bits
    return result
