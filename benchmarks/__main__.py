"""``python -m benchmarks <workload>``: the side-by-side benchmarks (see ``benchmarks/sidebyside.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sidebyside

sidebyside.main()
