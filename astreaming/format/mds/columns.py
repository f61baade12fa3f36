"""Decode a run of MDS samples column by column: fixed-size numeric columns into one array, at once.

The per-sample decoder (``reader.py``) builds one dict per sample. A DataLoader batch needs the transpose:
one array per numeric column and one list per other column. For a fixed-size numeric column (``int``,
the numpy scalar encodings, ``ndarray:<dtype>:<shape>``) every sample's value sits at a position computed
from the sample's offset and the lengths stored at its start, so the whole run's values are gathered by
numpy in one step, without a Python object per sample. Where the only other columns are ``str`` and
``bytes``, those are copied by numpy too, into the pickle of their list (``packed.py``), when the run
allows it; otherwise every non-numeric column is sliced and decoded in one compiled loop over the
samples, as the per-sample decoder does.

A value taken from the result equals what the per-sample decoder returns for it (:meth:`Columns.samples`
rebuilds those dicts exactly); a run whose stored lengths do not add up is decoded again by the
per-sample decoder, which names the shard and the sample.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from astreaming.format.mds.encodings import get_encoding
from astreaming.format.mds.encodings_scalar import (
    BytesEncoding,
    IntEncoding,
    NumpyScalarEncoding,
    StrEncoding,
)
from astreaming.format.mds.packed import PackedList, pack

__all__ = ["ColumnLayout", "Columns", "column_layout"]

#: What a column holds in :attr:`Columns.values`, and what one sample's value is:
#: ``int``: an int64 array, a Python int per sample; ``scalar``: an array, a numpy scalar per sample;
#: ``array``: an array of shape ``(n, *shape)``, a read-only array per sample; ``bytes``, ``str`` and
#: ``value``: a list of the samples' values.
STACKED_KINDS = frozenset({"int", "scalar", "array"})

#: Fixed-size values up to this size are gathered through one index array (8 bytes of index per byte
#: of value); larger ones are copied row by row (one memcpy per sample, no index array).
_GATHER_MAX = 64

#: Where a column's values start in the shard, per sample, and their lengths (an array, or the fixed size).
_Place = tuple[npt.NDArray[np.int64], Any]


@dataclasses.dataclass(frozen=True)
class Column:
    """How one column is decoded: its ``kind`` (see :data:`STACKED_KINDS`), fixed ``size`` (or None),
    ``dtype`` and per-sample ``shape`` of a stacked column, and ``decode`` for a ``value`` column."""

    name: str
    kind: str
    size: int | None
    dtype: np.dtype[Any] | None = None
    shape: tuple[int, ...] = ()
    decode: Callable[[bytes], Any] | None = None


@dataclasses.dataclass
class Columns:
    """The samples of one run, column by column.

    Attributes:
        layout: The columns' layout (names and kinds).
        values: Per column, in stored order: the stacked array of a numeric column (``layout.columns[c]
            .kind`` in :data:`STACKED_KINDS`), else the list of the samples' values, or for a ``str`` or
            ``bytes`` column the :class:`~astreaming.format.mds.packed.PackedList` of them.
        count: Number of samples.
    """

    layout: ColumnLayout
    values: list[Any]
    count: int

    def __len__(self) -> int:
        return self.count

    def samples(self) -> list[dict[str, Any]]:
        """The per-sample dicts the per-sample decoder returns for these samples (same types)."""
        per_column: list[Sequence[Any]] = []
        for col, values in zip(self.layout.columns, self.values, strict=True):
            if col.kind == "int":
                per_column.append(values.tolist())
            elif col.kind in ("scalar", "array"):
                values.flags.writeable = False  # the per-sample decoder hands out read-only arrays
                per_column.append(list(values))
            else:
                per_column.append(values.tolist() if isinstance(values, PackedList) else values)
        names = self.layout.names
        return [dict(zip(names, row, strict=True)) for row in zip(*per_column, strict=True)]


#: Runs shorter than this are decoded value by value even where they could be packed: packing costs
#: about 150 µs of numpy calls whatever the run's length, the compiled loop about 60 µs plus 2 µs a
#: sample (3 columns: 166 against 62 µs for one sample, 176 against 191 µs for 64). Short runs are what a
#: shuffled walk reads: one sample per shard at a py1e resume point.
PACK_MIN_ROWS = 48


class ColumnLayout:
    """The columnar decoder of one MDS column layout (see :func:`column_layout`)."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self.names = tuple(c.name for c in columns)
        self.num_var = sum(1 for c in columns if c.size is None)
        self.head = 4 * self.num_var
        #: Equal for layouts whose columns stack together (same names, kinds, dtypes and shapes).
        self.key = tuple((c.name, c.kind, c.size, c.dtype, c.shape) for c in columns)
        self._listed = [c for c, col in enumerate(columns) if col.kind not in STACKED_KINDS]
        self._lists = _compile_lists(self.columns) if self._listed else None
        #: Every listed column is str or bytes: runs may be packed (see :mod:`.packed`).
        self._packable = bool(self._listed) and all(columns[c].kind in ("str", "bytes") for c in self._listed)

    def decode(self, buf: Any, offs: Sequence[int], indices: Sequence[int]) -> Columns | None:
        """Decode the samples at ``indices`` (each ``0 <= i < N``).

        Args:
            buf: The shard (mmap or bytes).
            offs: The shard's ``N + 1`` sample offsets.
            indices: Sample indices within the shard.

        Returns:
            The columns, or None when a sample's stored lengths do not add up or a value does not decode
            (the caller decodes those samples one by one, which raises the precise error).
        """
        rows = np.asarray(indices, np.int64)
        n = len(rows)
        if n and int(rows.min()) < 0:
            raise IndexError(f"sample index {int(rows.min())} is negative")
        values: list[Any] = [None] * len(self.columns)
        if self._packable and n >= PACK_MIN_ROWS:
            # Every listed column is str or bytes: try the run without a Python object per value.
            packed = self._pack(buf, offs, rows, values)
            if packed is not None:
                return Columns(self, values, n) if packed else None
        if self._lists is not None:
            # One compiled loop over the samples slices and decodes every non-numeric column, and checks
            # that each sample's stored lengths add up to its size.
            try:
                lists = self._lists(buf, offs, indices)
            except IndexError:
                raise
            except Exception:  # a corrupt value: the per-sample decoder raises the error naming it
                return None
            if lists is None:
                return None
            for c, listed in zip(self._listed, lists, strict=True):
                values[c] = listed
        if len(self._listed) < len(self.columns) and not self._stack(buf, offs, rows, values):
            return None
        return Columns(self, values, n)

    def _places(
        self, u8: npt.NDArray[np.uint8], offs: Sequence[int], rows: npt.NDArray[np.int64]
    ) -> list[_Place] | None:
        """Per column, where each sample's value starts in the shard and its length (an array, or the
        fixed size); None if a sample's stored lengths do not add up to its size."""
        offsets = np.frombuffer(offs, np.uint32) if isinstance(offs, memoryview) else np.asarray(offs)
        begins = offsets[rows].astype(np.int64)
        ends = offsets[rows + 1].astype(np.int64)
        if self.head and bool((ends - begins < self.head).any()):
            return None
        lens = _gather(u8, begins, self.head).view("<u4").astype(np.int64) if self.num_var else None
        places: list[_Place] = []
        pos: npt.NDArray[np.int64] = begins + self.head
        var = 0
        for col in self.columns:
            if col.size is None:
                assert lens is not None
                length: Any = lens[:, var]
                var += 1
            else:
                length = col.size
            places.append((pos, length))
            pos = pos + length
        # Lengths are not negative: with every sample's last value ending at its end, each value lies
        # inside its sample.
        return places if not bool((pos != ends).any()) else None

    def _stack(self, buf: Any, offs: Sequence[int], rows: npt.NDArray[np.int64], values: list[Any]) -> bool:
        """Gather the numeric columns into ``values``; False if the lengths do not add up."""
        u8 = np.frombuffer(buf, np.uint8)
        places = self._places(u8, offs, rows)
        if places is None:
            return False
        self._fill(u8, places, len(rows), values)
        return True

    def _fill(self, u8: npt.NDArray[np.uint8], places: list[_Place], n: int, values: list[Any]) -> None:
        """Gather the numeric columns into ``values``."""
        for c, (col, (pos, _)) in enumerate(zip(self.columns, places, strict=True)):
            if col.kind in STACKED_KINDS:
                assert col.size is not None and col.dtype is not None
                values[c] = _gather(u8, pos, col.size).view(col.dtype).reshape((n, *col.shape))

    def _pack(
        self, buf: Any, offs: Sequence[int], rows: npt.NDArray[np.int64], values: list[Any]
    ) -> bool | None:
        """Decode every column into ``values``, the listed ones packed (:mod:`.packed`); False if the
        lengths do not add up, None where a column does not pack (decode value by value instead)."""
        u8 = np.frombuffer(buf, np.uint8)
        places = self._places(u8, offs, rows)
        if places is None:
            return False
        for c in self._listed:
            pos, length = places[c]
            lens = length if isinstance(length, np.ndarray) else np.full(len(rows), length, np.int64)
            packed = pack(u8, pos, lens, self.columns[c].kind)
            if packed is None:
                return None
            values[c] = packed
        self._fill(u8, places, len(rows), values)
        return True


def _compile_lists(columns: Sequence[Column]) -> Callable[[Any, Sequence[int], Sequence[int]], Any]:
    """``lists(buf, offs, indices)``: per non-numeric column, the list of its values at ``indices``
    (None when a sample's lengths do not add up); one loop, the per-sample decoder's without the dict."""
    num_var = sum(1 for c in columns if c.size is None)
    namespace: dict[str, Any] = {"_unpack": struct.Struct(f"<{num_var}I").unpack_from}
    body = [f"begin = offs[i]\nend = offs[i + 1]\nq = begin + {4 * num_var}"]
    if num_var:
        names = ", ".join(f"l{v}" for v in range(num_var))
        body.append(f"{names}{',' if num_var == 1 else ''} = _unpack(buf, begin)")
    outs: list[str] = []
    var = 0
    for c, col in enumerate(columns):
        if col.size is None:
            step, var = f"l{var}", var + 1
        else:
            step = str(col.size)
        if col.kind in STACKED_KINDS:
            body.append(f"q += {step}")  # gathered by numpy
            continue
        outs.append(f"o{c}")
        value = "buf[q:p]"
        if col.kind == "str":
            value += '.decode("utf-8")'
        elif col.kind == "value":
            namespace[f"d{c}"] = col.decode
            value = f"d{c}({value})"
        body.append(f"p = q + {step}\na{c}({value})\nq = p")
    body.append("if q != end:\n    return None")
    lines = "\n".join(body).replace("\n", "\n        ")
    consts = ", ".join(f"{k}={k}" for k in namespace)
    source = (
        f"def lists(buf, offs, indices, {consts}):\n"
        + "".join(f"    {o} = []\n    a{o[1:]} = {o}.append\n" for o in outs)
        + f"    for i in indices:\n        {lines}\n"
        + f"    return [{', '.join(outs)}]\n"
    )
    exec(compile(source, "<mds column decoder>", "exec"), namespace)
    lists: Callable[[Any, Sequence[int], Sequence[int]], Any] = namespace["lists"]
    return lists


def _gather(u8: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.uint8]:
    """The ``size`` bytes at each of ``starts``, as an ``(n, size)`` uint8 array (a new array)."""
    if size <= _GATHER_MAX:
        index = starts[:, None] + _ARANGES[size]
        gathered: npt.NDArray[np.uint8] = u8[index]
        return gathered
    out = np.empty((len(starts), size), np.uint8)
    for row, begin in enumerate(starts.tolist()):
        out[row] = u8[begin : begin + size]
    return out


_ARANGES = [np.arange(k, dtype=np.int64) for k in range(_GATHER_MAX + 1)]


def _column(name: str, spec: str) -> Column:
    enc = get_encoding(spec)
    size = enc.size
    if isinstance(enc, IntEncoding):
        return Column(name, "int", size, np.dtype("<i8"))
    if isinstance(enc, NumpyScalarEncoding):
        return Column(name, "scalar", size, enc.dtype)
    if size is not None and spec.partition(":")[0] == "ndarray":
        # Imported by get_encoding already; only datasets with an ndarray column load the module.
        from astreaming.format.mds.encodings_ndarray import NDArrayEncoding

        assert isinstance(enc, NDArrayEncoding) and enc.dtype is not None and enc.shape is not None
        return Column(name, "array", size, enc.dtype, enc.shape)
    if isinstance(enc, BytesEncoding):
        return Column(name, "bytes", size)
    if isinstance(enc, StrEncoding):
        return Column(name, "str", size)
    return Column(name, "value", size, decode=enc.decode)


@functools.lru_cache(maxsize=64)
def column_layout(names: tuple[str, ...], encodings: tuple[str, ...]) -> ColumnLayout | None:
    """The columnar decoder of a layout, or None where the host's byte order differs from the format's
    (little-endian) and the per-sample decoder is used instead.

    The caller has already built the per-sample decoder of the same layout, which checks every spec.
    Shards of one layout share one decoder (it holds no state): compiling its loop costs ~1 ms.
    """
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        return None
    return ColumnLayout([_column(n, s) for n, s in zip(names, encodings, strict=True)])
