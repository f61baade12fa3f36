"""The Python memory each astreaming module holds once a cached walk has started (``tracemalloc``).

Imports torch and numpy first (the side-by-side baseline), then wraps every module's execution to count the
memory allocated while it ran, less what the modules it imported allocated (``-X importtime``'s "self"
split, for memory), constructs a ``StreamingDataset`` over ``DATA`` (a cached local dataset) and takes its
first sample. Prints each module's own kilobytes, largest first, and the total.

    python benchmarks/module_memory.py /tmp/astreaming-bench/large-20000-1000/astreaming
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
import tracemalloc
from collections.abc import Sequence
from types import ModuleType
from typing import Any


class _Measured(importlib.abc.MetaPathFinder):
    """Finds modules as the other finders do, and measures what each one's execution allocates."""

    def __init__(self) -> None:
        self.own: dict[str, int] = {}
        self._children: list[int] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _Loader(self, name, loader)
        return spec

    def run(self, name: str, loader: Any, module: ModuleType) -> None:
        self._children.append(0)
        before = tracemalloc.get_traced_memory()[0]
        try:
            loader.exec_module(module)
        finally:
            spent = tracemalloc.get_traced_memory()[0] - before
            children = self._children.pop()
            self.own[name] = spent - children
            if self._children:
                self._children[-1] += spent


class _Loader(importlib.abc.Loader):
    def __init__(self, measured: _Measured, name: str, loader: Any) -> None:
        self._measured, self._name, self._loader = measured, name, loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._measured.run(self._name, self._loader, module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data", help="a cached local MDS dataset")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    import numpy  # noqa: F401
    import torch  # noqa: F401

    measured = _Measured()
    sys.meta_path.insert(0, measured)
    tracemalloc.start()
    from astreaming import StreamingDataset

    next(iter(StreamingDataset(local=args.data, batch_size=256)))
    own = {name: size for name, size in measured.own.items() if name.startswith("astreaming")}
    print(f"{len(own)} astreaming modules, {sum(own.values()) / 1024:.0f} KB of Python objects in all")
    for name, size in sorted(own.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{size / 1024:7.0f} KB  {name}")


if __name__ == "__main__":
    main()
