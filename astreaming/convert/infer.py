"""Infer MDS encodings from sample values (JSONL objects, CSV text).

The rules, chosen so that every value round-trips to what the source held:

- JSON: all ``int`` -> ``int``; ints and floats -> ``float64``; all ``str`` -> ``str``; anything else
  (``bool``, ``null``, lists, objects, a mix) -> ``json``, which stores and returns the value as is.
- CSV: every value an integer literal -> ``int``; every value a number -> ``float64``; otherwise (or
  any empty field) -> ``str``.

Only the first ``limit`` rows are looked at (0 = all); a later row that does not fit its column fails
with an error naming the row and suggesting ``--columns``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["infer_json", "infer_text"]

_INT_RE = re.compile(r"^[+-]?\d+$")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "json"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def infer_json(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Encodings for JSON-like rows (column order: first appearance)."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for name, value in row.items():
            kinds.setdefault(name, set()).add(_json_kind(value))
        for name in kinds:
            if name not in row:
                kinds[name].add("missing")
    out = {}
    for name, seen in kinds.items():
        if seen == {"int"}:
            out[name] = "int"
        elif seen <= {"int", "float"}:
            out[name] = "float64"
        elif seen == {"str"}:
            out[name] = "str"
        else:
            out[name] = "json"
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def infer_text(names: Iterable[str], rows: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Encodings for rows of text fields (CSV/TSV)."""
    state = {name: "int" for name in names}
    for row in rows:
        for name, current in state.items():
            if current == "str":
                continue
            text = row.get(name) or ""
            if _INT_RE.match(text):
                continue  # an integer fits an int and a float64 column alike
            # Whitespace around a number would be lost by float(): keep such columns as text.
            state[name] = "float64" if text and text.strip() == text and _is_float(text) else "str"
    return {name: kind for name, kind in state.items()}
