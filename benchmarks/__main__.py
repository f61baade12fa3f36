"""``python -m benchmarks <workload>``: the side-by-side benchmarks (see ``benchmarks/sidebyside.py``), and
``python -m benchmarks fault-matrix`` (see ``benchmarks/fault_matrix.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if sys.argv[1:2] == ["fault-matrix"]:
    import fault_matrix

    sys.exit(fault_matrix.main(sys.argv[2:]))

import sidebyside

sidebyside.main()
