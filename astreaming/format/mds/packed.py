"""A column of ``str`` or ``bytes`` values kept as the pickle of its list, built by numpy from the shard.

A DataLoader worker that decodes a batch's ``str`` and ``bytes`` columns into Python objects spends most
of its time making those objects, then pickling them for the main process, which makes them again. Here
a run's values of such a column are copied from the shard, in one numpy gather, straight into the
opcodes ``pickle`` writes for a list of them (``SHORT_BINUNICODE`` / ``BINUNICODE`` for ``str``,
``SHORT_BINBYTES`` / ``BINBYTES`` for ``bytes``): no Python object per value on the worker's side, and
the main process's ``pickle.loads`` makes the list at C speed. In-process, :meth:`PackedList.tolist`
does the same.

Only runs where this is exact and cheap are packed (:func:`pack` returns None otherwise, and the caller
decodes value by value): ``str`` values that are all ASCII (``pickle`` decodes UTF-8 with
``surrogatepass``, which accepts byte sequences the per-sample decoder's strict ``decode`` refuses), and
values of at most :data:`PACK_MEAN_MAX` bytes on average (longer values cost little per object, and the
gather's index arrays would cost 8 bytes per byte copied).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PACK_MEAN_MAX", "PackedList", "pack"]

#: Runs whose values average more bytes than this are decoded value by value.
PACK_MEAN_MAX = 128

# pickle opcodes (protocol 4): a value of < 256 bytes takes a 1-byte length, a longer one a 4-byte one.
_SHORT = {"str": 0x8C, "bytes": ord("C")}  # SHORT_BINUNICODE, SHORT_BINBYTES
_LONG = {"str": ord("X"), "bytes": ord("B")}  # BINUNICODE, BINBYTES
# PROTO 4, EMPTY_LIST, MARK ... APPENDS, STOP
_HEAD = b"\x80\x04]("
_TAIL = b"e."
_LONG_SHIFTS = np.array([0, 8, 16, 24], np.int64)


class PackedList:
    """The values of a ``str`` or ``bytes`` column over a run of samples, as pickle opcodes.

    Attributes:
        body: The opcodes of the values, one after the other (without the list's head and tail).
        count: Number of values.
    """

    __slots__ = ("body", "count")

    def __init__(self, body: npt.NDArray[np.uint8], count: int) -> None:
        self.body = body
        self.count = count

    def __len__(self) -> int:
        return self.count

    def tolist(self) -> list[Any]:
        """The list of the values (the same the per-sample decoder returns, one by one)."""
        return load_list(payload([self]))


def payload(parts: Sequence[PackedList]) -> bytes:
    """The pickle of the list of every value of ``parts``, in order (:func:`load_list` reads it)."""
    pieces: list[Any] = [_HEAD, *(p.body for p in parts), _TAIL]
    return b"".join(pieces)


def load_list(data: bytes) -> list[Any]:
    """The list :func:`payload` pickled."""
    out: list[Any] = pickle.loads(data)
    return out


def pack(
    u8: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], lens: npt.NDArray[np.int64], kind: str
) -> PackedList | None:
    """The ``kind`` (``"str"`` or ``"bytes"``) values at ``u8[starts[i] : starts[i] + lens[i]]``, packed.

    Every ``starts[i]`` is at least 5 (the values of an MDS shard follow its header) and every value lies
    inside ``u8``. None where packing is not exact or not worth it (see the module's docstring).
    """
    n = len(starts)
    total = int(lens.sum())
    if n and total > PACK_MEAN_MAX * n:
        return None
    long = lens >= 256
    any_long = bool(long.any())
    heads = np.where(long, 5, 2) if any_long else np.full(n, 2, np.int64)
    sizes = heads + lens
    ends = np.cumsum(sizes)
    dst = ends - sizes  # where each value's opcode goes
    # One gather for heads and values alike: byte k of value i's record reads u8[starts[i] - heads[i] + k]
    # (the head's bytes read whatever precedes the value, and are written over below).
    src = np.arange(int(ends[-1]) if n else 0, dtype=np.int64) + np.repeat(starts - heads - dst, sizes)
    body = u8[src]
    if kind == "str" and total:
        # ASCII only: zero the heads' bytes (still the shard's), then look at every byte at once.
        body[dst] = 0
        body[dst + 1] = 0
        if any_long:
            body[dst[long][:, None] + np.arange(2, 5)] = 0
        if int(body.max()) >= 0x80:
            return None
    short = ~long if any_long else slice(None)
    body[dst[short]] = _SHORT[kind]
    body[dst[short] + 1] = lens[short]
    if any_long:
        at = dst[long]
        body[at] = _LONG[kind]
        body[at[:, None] + np.arange(1, 5)] = (lens[long][:, None] >> _LONG_SHIFTS) & 0xFF
    return PackedList(body, n)
