"""Module attributes imported on first use (PEP 562), so a package's ``__init__`` costs nothing to import.

Why: a cached local walk needs a fraction of astreaming's modules, and every module imported costs each
process memory (about 25 KB of Python objects a module here: ``benchmarks/module_memory.py``) and
start-up time (spawned DataLoader workers import again). A package that re-exports its submodules'
names would import them all with the first submodule anyone imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a module whose public names live in other modules.

    Args:
        namespace: the module's ``globals()``: a name resolved once is stored there, so later lookups are
            plain attribute reads.
        exports: public name -> module (absolute) that defines it.

    ``__dir__`` lists the module's ``__all__`` (or the exports).
    """
    module_name = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", exports))

    return __getattr__, __dir__
