"""``to_tensor``: PIL image or HWC uint8 array -> CHW float tensor in [0, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_tensor(pic: Any) -> torch.Tensor:
    """Convert an image to a float tensor, channels first, scaled to [0, 1] when it is 8-bit."""
    arr = np.array(pic, copy=True)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    tensor = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    return tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor
