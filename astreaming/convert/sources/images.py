"""Image folder source: ``SRC/<class>/<...>/<file>`` (torchvision's ImageFolder layout).

Each file becomes ``{"image": <file bytes>, "label": <class number>, "path": "<class>/<...>/<file>"}``;
classes are numbered in sorted name order and their names are written to ``classes.json`` next to
``index.json``. The image column is ``jpeg`` or ``png`` (the file bytes as stored) when every file is of
that type; a mixed folder needs ``--columns image:png`` (re-encodes the others) or ``image:bytes``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping

from astreaming.convert.fs import SourceFS
from astreaming.convert.sources.base import Row, Source, Unit
from astreaming.errors import ConfigError, FormatError

__all__ = ["ImageFolderSource"]

_KINDS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}


class ImageFolderSource(Source):
    """Every file below each class directory, in sorted order (classes, then paths)."""

    kind = "imagefolder"

    def __init__(self, root: str, fs: SourceFS | None = None) -> None:
        self.root = root
        self.fs = fs or SourceFS()
        self.classes = self.fs.dirs(root)
        if not self.classes:
            raise ConfigError(f"convert: {self.fs.name(root)} has no class sub-directories")
        label = {name: i for i, name in enumerate(self.classes)}
        below = [rel for rel in self.fs.files_below(root) if "/" in rel and rel.split("/", 1)[0] in label]
        # Classes in sorted order, each in walk order (files_below is in walk order already).
        self.files = sorted(((rel, label[rel.split("/", 1)[0]]) for rel in below), key=lambda f: f[1])

    unit_cap = 1024

    def units(self, max_weight: int | None) -> list[Unit]:
        step = len(self.files) if max_weight is None else max_weight
        return [
            Unit(self.root, i, min(i + step, len(self.files)), min(step, len(self.files) - i))
            for i in range(0, len(self.files), max(step, 1))
        ]

    def total(self) -> int | None:
        return len(self.files)

    def rows(self, unit: Unit) -> Iterator[Row]:
        for rel, label in self.files[unit.start : unit.stop]:
            path = self.fs.join(self.root, rel)
            try:
                data = self.fs.read_bytes(path)  # one request for a remote image
            except OSError as e:
                raise FormatError(f"{self.fs.name(path)}: unreadable ({e.strerror or e})") from None
            yield self.fs.name(path), {"image": data, "label": label, "path": rel}

    def infer(self, limit: int, given: Mapping[str, str]) -> dict[str, str]:
        if "image" in given:
            return {"image": given["image"], "label": "int", "path": "str"}
        kinds: dict[str, str] = {}
        for rel, _ in self.files:
            kind = _KINDS.get(os.path.splitext(rel)[1].lower())
            if kind is None:
                raise FormatError(
                    f"{self.fs.name(self.fs.join(self.root, rel))}: not a .jpg/.jpeg/.png file; remove it, "
                    "or pass --columns image:bytes to store every file as it is"
                )
            kinds.setdefault(kind, rel)
        if len(kinds) > 1:
            raise ConfigError(
                f"convert: {self.fs.name(self.root)} mixes JPEG ({kinds['jpeg']}) and PNG ({kinds['png']}) "
                "files; pass --columns image:png (or image:jpeg) to re-encode the others, or image:bytes to "
                "store them as they are"
            )
        image = next(iter(kinds), "jpeg")
        return {"image": image, "label": "int", "path": "str"}

    def sidecars(self) -> dict[str, bytes]:
        return {"classes.json": json.dumps({"classes": self.classes}, indent=1).encode() + b"\n"}
