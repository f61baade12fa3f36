"""``DrawCursor`` replays numpy's ``Generator.integers`` from the generator's output stream exactly.

The py1e pass reads each span's block-size integer with it instead of calling numpy (and skips the
span's uniforms by moving a position): every branch of numpy's bounded-integer algorithm is compared with
``Generator.integers`` itself, from states with and without a buffered 32-bit half, with uniforms
skipped between draws, and the generator is left exactly where numpy's own draws leave it.
"""

from __future__ import annotations

import numpy as np
import pytest

from astreaming.order.shuffle._cursor import DrawCursor

BRANCHES = [
    pytest.param(3_000_000, 5_000_000, id="lemire32-py1e-block"),
    pytest.param(0, (1 << 31) + 3, id="lemire32-half-rejected"),
    pytest.param(0, 2, id="lemire32-tiny"),
    pytest.param(7, 8, id="no-draw"),
    pytest.param(0, 1 << 32, id="uint32-whole"),
    pytest.param(-5, (1 << 32) + 9, id="lemire64"),
    pytest.param(-(1 << 62), 1 << 61, id="lemire64-quarter-rejected"),
    pytest.param(-(1 << 63), (1 << 63) - 1, id="lemire64-widest"),
]


@pytest.mark.parametrize(("low", "high"), BRANCHES)
@pytest.mark.parametrize("buffered", [False, True])
def test_integers_and_skips_match_numpy(low: int, high: int, buffered: bool) -> None:
    for seed in range(40):
        numpy_rng, ours = np.random.default_rng(seed), np.random.default_rng(seed)
        if buffered:  # one 32-bit draw leaves the high half of a 64-bit output buffered
            numpy_rng.integers(0, 7)
            ours.integers(0, 7)
        bitgen = ours.bit_generator
        assert isinstance(bitgen, np.random.PCG64)
        cursor = DrawCursor(bitgen)
        for draw in range(6):
            skip = (seed + draw) % 4
            want = int(numpy_rng.integers(low, high))
            numpy_rng.random(skip)
            assert cursor.integers(low, high) == want, (seed, draw)
            cursor.skip(skip)
        cursor.settle()
        assert ours.bit_generator.state == numpy_rng.bit_generator.state
        assert ours.integers(0, 1 << 40, size=3).tolist() == numpy_rng.integers(0, 1 << 40, size=3).tolist()


def test_an_empty_range_is_numpys_error() -> None:
    bitgen = np.random.PCG64(1)
    with pytest.raises(ValueError, match="low >= high"):
        DrawCursor(bitgen).integers(5, 5)
    with pytest.raises(ValueError, match="low >= high"):
        np.random.Generator(np.random.PCG64(1)).integers(5, 5)
