"""Human-readable size and count strings shared by format (size_limit) and order (epoch_size)."""

from __future__ import annotations

import re

from astreaming.errors import ConfigError

_BYTE_UNITS = {"b": 0, "kb": 1, "mb": 2, "gb": 3, "tb": 4, "pb": 5, "eb": 6, "zb": 7, "yb": 8}
_COUNT_UNITS = {"k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$")


def bytes_to_int(value: int | float | str, *, name: str = "size") -> int:
    """Parse ``1024``, ``"100kb"``, ``"1.5gb"`` (binary units, case-insensitive) to bytes.

    Raises:
        ConfigError: naming ``name`` when the value cannot be parsed.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected an int or a size string like '64mb', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = _BYTES_RE.match(value.lower())
    if match is None or match.group(2) not in _BYTE_UNITS | {"": 0}:
        raise ConfigError(f"{name}: cannot parse {value!r} as a byte size (e.g. '64mb', '1.5gb')")
    number, unit = match.groups()
    return int(float(number) * 1024 ** _BYTE_UNITS.get(unit, 0))


def number_abbrev_to_int(value: int | float | str, *, name: str = "number") -> int:
    """Parse ``100``, ``"100k"``, ``"64M"``, ``"77b"`` (k=1e3, m=1e6, b=1e9, t=1e12) to an int.

    Raises:
        ConfigError: naming ``name`` when the value cannot be parsed.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected an int or a string like '100k', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = value.strip().lower()
    try:
        if text and text[-1] in _COUNT_UNITS:
            return int(float(text[:-1]) * _COUNT_UNITS[text[-1]])
        return int(float(text))
    except ValueError:
        raise ConfigError(f"{name}: cannot parse {value!r} as a count (e.g. 1000, '100k', '64M')") from None
