"""Write a benchmark dataset with mosaic's MDSWriter (peer venv): ``_common.write_dataset(writer="mosaic")``.

python benchmarks/peers/mosaic_write.py --out DIR --num 200000 --kind small [--size-limit 67108864]
"""

from __future__ import annotations

import argparse
import time

import _peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, required=True)
    parser.add_argument("--kind", default="small", choices=["small", "large"])
    parser.add_argument("--size-limit", type=int, default=1 << 26, help="0 = one shard")
    args = parser.parse_args()

    from _common import COLUMNS, make_sample
    from streaming import MDSWriter

    began = time.perf_counter()
    with MDSWriter(out=args.out, columns=COLUMNS, size_limit=args.size_limit or None) as writer:
        for i in range(args.num):
            writer.write(make_sample(i, args.kind))
    _peer.emit({"samples": args.num, "seconds": time.perf_counter() - began})


if __name__ == "__main__":
    main()
