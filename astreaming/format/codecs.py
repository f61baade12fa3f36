"""One class per compression family (mosaic's ``Zstandard(level)``, ``Gzip``, ...) and their registry.

Each instance is a :class:`~astreaming.format.compression.Compression` (the object the readers and
writers use), so ``Zstandard(7).compress(data)`` produces exactly what ``compression="zstd:7"`` writes.
"""

from __future__ import annotations

from astreaming.errors import ConfigError
from astreaming.format.compression import Compression, get_compression

__all__ = [
    "Brotli",
    "Bzip2",
    "Gzip",
    "Snappy",
    "Zstandard",
    "compression_from_name",
    "compression_registry",
]


class _Family(Compression):
    """A compression family with an optional level (``None``: the family's default)."""

    family_name: str = ""

    def __init__(self, level: int | None = None) -> None:
        spec = self.family_name if level is None else f"{self.family_name}:{level}"
        base = get_compression(spec)
        assert base is not None
        super().__init__(base.spec, base.family, base.level, base.extension, base._family)


class Brotli(_Family):
    """``br``: levels 0-11 (default 11)."""

    family_name = "br"


class Bzip2(_Family):
    """``bz2``: levels 1-9 (default 9)."""

    family_name = "bz2"


class Gzip(_Family):
    """``gz``: levels 0-9 (default 9); written with mtime 0, so the output is reproducible."""

    family_name = "gz"


class Snappy(_Family):
    """``snappy``: raw snappy blocks; takes no level."""

    family_name = "snappy"

    def __init__(self) -> None:
        super().__init__(None)


class Zstandard(_Family):
    """``zstd``: levels 1-22 (default 3)."""

    family_name = "zstd"


#: Compression classes by family name (mosaic's registry of compressions).
compression_registry: dict[str, type[_Family]] = {
    cls.family_name: cls for cls in (Brotli, Bzip2, Gzip, Snappy, Zstandard)
}


def compression_from_name(algo: str) -> _Family:
    """The instance for ``"zstd"`` or ``"zstd:7"`` (any registered family, with an optional level).

    Raises:
        ConfigError: an unknown family or a level the family does not take.
    """
    get_compression(algo)  # validates family and level, with the message naming the valid values
    family, sep, level = algo.partition(":")
    cls = compression_registry.get(family)
    if cls is None:  # pragma: no cover - get_compression accepted it, so the family is registered
        raise ConfigError(f"compression: unsupported value {algo!r}")
    if cls is Snappy:
        return Snappy()
    return cls(int(level) if sep else None)
