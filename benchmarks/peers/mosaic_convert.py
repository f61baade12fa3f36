"""What a mosaicml-streaming user writes to convert JSONL today: a loop over the lines into its MDSWriter.

python benchmarks/peers/mosaic_convert.py --src rows.jsonl --out DIR [--size-limit N] [--hashes sha1,xxh64]
"""

from __future__ import annotations

import argparse
import json
import time

import _peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size-limit", type=int, default=1 << 26)
    parser.add_argument("--hashes", default="")
    args = parser.parse_args()

    from convert_verify import COLUMNS
    from streaming import MDSWriter

    began = time.perf_counter()
    rows = 0
    hashes = [h for h in args.hashes.split(",") if h] or None
    with (
        MDSWriter(out=args.out, columns=COLUMNS, size_limit=args.size_limit, hashes=hashes) as writer,
        open(args.src, "rb") as lines,
    ):
        for line in lines:
            writer.write(json.loads(line))
            rows += 1
    _peer.emit({"rows": rows, "seconds": time.perf_counter() - began})


if __name__ == "__main__":
    main()
