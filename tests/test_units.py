"""Human-readable sizes and counts."""

from __future__ import annotations

import pytest

from astreaming._units import bytes_to_int, number_abbrev_to_int
from astreaming.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64mb", 64 << 20), ("1kb", 1024), ("1.5GB", int(1.5 * (1 << 30))), ("100", 100), ("7b", 7)],
)
def test_bytes_to_int(text: str, expected: int) -> None:
    assert bytes_to_int(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100k", 100_000), ("64M", 64_000_000), ("77b", 77_000_000_000), ("2t", 2 * 10**12), ("5", 5)],
)
def test_number_abbrev_to_int(text: str, expected: int) -> None:
    assert number_abbrev_to_int(text) == expected


@pytest.mark.parametrize("bad", ["ten", "10qb", "", "1.2.3mb"])
def test_bad_sizes_name_the_argument(bad: str) -> None:
    with pytest.raises(ConfigError, match="size_limit"):
        bytes_to_int(bad, name="size_limit")
    with pytest.raises(ConfigError, match="epoch_size"):
        number_abbrev_to_int(bad + "x", name="epoch_size")
