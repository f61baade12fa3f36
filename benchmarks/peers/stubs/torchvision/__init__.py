"""Stand-in for torchvision in the peer venv (benchmarks only, never shipped).

With the CPU build of torch 2.13.0, ``import torchvision`` fails while registering ``torchvision::nms``,
and ``import streaming`` imports torchvision through ``streaming.vision``. mosaic only needs two names
from it: ``torchvision.datasets.VisionDataset`` and ``torchvision.transforms.functional.to_tensor``.
The peer scripts put ``benchmarks/peers/stubs`` first on ``sys.path`` so this package shadows the real one.
"""

__version__ = "0.0.0+astreaming-benchmark-stub"
