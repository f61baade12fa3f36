"""Small text helpers shared by the subcommands: sizes, durations, rates, aligned tables."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["fmt_bytes", "fmt_rate", "fmt_seconds", "plural", "table"]

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def fmt_bytes(n: float) -> str:
    """``n`` bytes in decimal units (``41.2 MB``): the unit the link speed is given in."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def plural(n: int, word: str, suffix: str = "s") -> str:
    """``"1 shard"``, ``"2 shards"`` (thousands separated)."""
    return f"{n:,} {word}{'' if n == 1 else suffix}"


def fmt_seconds(s: float) -> str:
    """A duration: milliseconds below one second, else seconds."""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def fmt_rate(count: float, seconds: float, unit: str = "samples") -> str:
    """``count`` per second with thousands separators (``21,345 samples/s``)."""
    if seconds <= 0:
        return f"n/a {unit}/s"
    return f"{count / seconds:,.0f} {unit}/s"


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None, indent: str = "") -> str:
    """Rows as left-aligned columns (numbers right-aligned), one line per row."""
    all_rows = [list(header)] if header is not None else []
    all_rows += [list(r) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(max(map(len, all_rows)))]
    lines = []
    for row in all_rows:
        cells = []
        for i, cell in enumerate(row):
            numeric = cell.replace(",", "").replace(".", "").isdigit()
            cells.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)
