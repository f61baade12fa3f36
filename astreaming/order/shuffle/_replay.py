"""Generator states recorded by a replay of an epoch's draws, and replayed later from any of them.

The lazy shuffles replay an epoch's draws once (the number of draws a shuffle takes depends on the values
drawn, so nothing can be skipped), record the generator state before each piece of work, and later
redo just the pieces a consumer needs from those states.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STATE_WIDTH", "Replay", "pack_state"]

#: uint64 words of a packed PCG64 state: state (2), increment (2), has_uint32, uinteger.
STATE_WIDTH = 6

_MASK = (1 << 64) - 1


def pack_state(bitgen: np.random.BitGenerator) -> list[int]:
    """The generator's state as :data:`STATE_WIDTH` ints (a row of a uint64 array)."""
    state = bitgen.state
    s, inc = state["state"]["state"], state["state"]["inc"]
    return [s >> 64, s & _MASK, inc >> 64, inc & _MASK, state["has_uint32"], state["uinteger"]]


class Replay:
    """One generator whose state is set from a packed row (building a PCG64 per row costs more)."""

    def __init__(self) -> None:
        self.bitgen = np.random.PCG64(0)
        self.rng = np.random.Generator(self.bitgen)

    def at(self, row: np.ndarray) -> np.random.Generator:
        """The generator, set to the packed state ``row``."""
        values = row.tolist()
        self.bitgen.state = {
            "bit_generator": "PCG64",
            "state": {"state": (values[0] << 64) | values[1], "inc": (values[2] << 64) | values[3]},
            "has_uint32": values[4],
            "uinteger": values[5],
        }
        return self.rng
