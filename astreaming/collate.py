"""The default collation of ``StreamingDataLoader``: torch's ``default_collate`` for MDS samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info
from torch.utils.data._utils.collate import collate as _collate
from torch.utils.data._utils.collate import default_collate_fn_map

__all__ = ["collate"]


def _collate_ndarray(batch: list[np.ndarray], *, collate_fn_map: Any = None) -> Any:
    """Stack same-shaped numeric arrays into one tensor, copying each sample once.

    torch's own rule wraps each array with ``torch.as_tensor`` first, which warns for the read-only
    arrays MDS decodes ("The given NumPy array is not writable"). Here the arrays are copied straight
    into the batch tensor, allocated in shared memory inside a DataLoader worker as torch does, so the
    batch reaches the main process without another copy.
    """
    elem = batch[0]
    if elem.dtype.kind not in "biuf" or any(a.shape != elem.shape for a in batch):
        # Strings, objects, ragged shapes: torch's rule (and its error messages).
        return default_collate_fn_map[np.ndarray](batch, collate_fn_map=collate_fn_map)
    dtype = elem.dtype.newbyteorder("=")
    out = torch.empty((len(batch), *elem.shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    if get_worker_info() is not None:
        out.share_memory_()  # type: ignore[no-untyped-call]
    np.stack(batch, out=out.numpy(), casting="same_kind")
    return out


_COLLATE_MAP = {**default_collate_fn_map, np.ndarray: _collate_ndarray}


def collate(batch: list[Any]) -> Any:
    """``torch.utils.data.default_collate``, except that numpy arrays are stacked without torch's
    read-only warning and without an extra copy (the default of :class:`StreamingDataLoader`)."""
    return _collate(batch, collate_fn_map=_COLLATE_MAP)
