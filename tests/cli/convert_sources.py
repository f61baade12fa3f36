"""Source datasets for the convert/verify CLI tests, with the rows each holds (the expected values)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def jsonl_rows(n: int) -> list[dict[str, Any]]:
    """Rows with an int, a float, a str and a nested (json) column."""
    return [{"id": i, "score": i / 4, "text": "w" * (i % 11), "tags": [i % 3, {"k": i}]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One JSON object per line (a blank line in the middle, as editors leave them)."""
    lines = [json.dumps(r) for r in rows]
    lines.insert(len(lines) // 2, "")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    """A CSV file with a header; a quoted field holds the delimiter and a newline."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())
    return path


def csv_rows(n: int) -> list[dict[str, Any]]:
    """Rows with an int, a float and a text column (one text holds a comma and a newline)."""
    return [
        {"id": i, "price": i * 1.5 + 0.25, "name": "a, b\nc" if i == 3 else f"item {i}"} for i in range(n)
    ]


def write_parquet(path: Path, n: int, row_group_size: int = 10) -> list[dict[str, Any]]:
    """A Parquet file of typed columns (int32, float32, string, binary, list<float>, a nullable int)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "i32": i,
            "f32": float(i) / 2,
            "s": f"row {i}",
            "b": bytes([i % 256]) * 3,
            "emb": [float(i), float(i) + 0.5],
            "maybe": None if i % 4 == 0 else i,
        }
        for i in range(n)
    ]
    schema = pa.schema(
        [
            ("i32", pa.int32()),
            ("f32", pa.float32()),
            ("s", pa.string()),
            ("b", pa.binary()),
            ("emb", pa.list_(pa.float64())),
            ("maybe", pa.int64()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return rows


def write_image_folder(root: Path, per_class: int = 3, fmt: str = "PNG") -> list[tuple[str, int, bytes]]:
    """``root/<cat|dog>/img_<k>.<ext>``; returns ``(relative path, label, file bytes)`` in sorted order."""
    ext = "png" if fmt == "PNG" else "jpg"
    out = []
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = np.full((4 + k, 5, 3), (40 * k + 100 * label) % 256, np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format=fmt)
            (root / name / f"img_{k}.{ext}").write_bytes(buf.getvalue())
            out.append((f"{name}/img_{k}.{ext}", label, buf.getvalue()))
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
