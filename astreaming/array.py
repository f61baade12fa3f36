"""``Array``: int, slice, list and ndarray indexing over one ``get_item`` (mosaic's ``Array`` base)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Array"]


class Array:
    """Gives a subclass ``x[i]`` (negative wraps), ``x[a:b:c]``, ``x[[i, j]]`` and integer-ndarray indexing.

    A subclass provides :attr:`size` and :meth:`get_item`; every index form ends in ``get_item`` with an
    id in ``0 <= id < size``, so overriding ``get_item`` transforms every way of reading a sample.
    :class:`~astreaming.StreamingDataset` derives from it, as mosaic's ``StreamingDataset`` does.
    """

    @property
    def size(self) -> int:
        """Number of items."""
        raise NotImplementedError(f"{type(self).__name__} must define size (an Array subclass)")

    def get_item(self, idx: int) -> Any:
        """Item ``idx`` (``0 <= idx < size``)."""
        raise NotImplementedError(f"{type(self).__name__} must define get_item (an Array subclass)")

    def __getitem__(self, at: Any) -> Any:
        """``x[i]`` (negative wraps), ``x[a:b:c]``, ``x[[i, j]]`` or an integer ndarray (a list back).

        Raises:
            IndexError: an int index outside ``-size <= i < size``.
            TypeError: any other kind of index.
        """
        size = self.size
        if isinstance(at, (int, np.integer)):
            i = int(at)
            if not -size <= i < size:
                raise IndexError(f"index {i} out of range for {size} items")
            return self.get_item(i % size)
        if isinstance(at, slice):
            return [self.get_item(i) for i in range(*at.indices(size))]
        if isinstance(at, (list, tuple, np.ndarray)):
            return [self[i] for i in (at.tolist() if isinstance(at, np.ndarray) else at)]
        raise TypeError(f"indices must be int, slice, list or integer ndarray, not {type(at).__name__}")
