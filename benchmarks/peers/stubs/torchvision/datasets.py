"""``VisionDataset``: the base class mosaic's ``StreamingVisionDataset`` mixes in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset


class VisionDataset(Dataset[Any]):
    """Holds a root and the transforms, like torchvision's; nothing the benchmarks exercise needs more."""

    def __init__(
        self,
        root: str | None = None,
        transforms: Callable[..., Any] | None = None,
        transform: Callable[..., Any] | None = None,
        target_transform: Callable[..., Any] | None = None,
    ) -> None:
        self.root = root
        self.transforms = transforms
        self.transform = transform
        self.target_transform = target_transform
