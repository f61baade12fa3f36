"""Image MDS encodings: ``pil``, ``jpeg``, ``png``, ``list[pil|jpeg|png]`` and ``jpeg_array``.

Pillow is imported when one of these encodings is first built, not when astreaming is imported.
"""

from __future__ import annotations

import os
import struct
from io import BytesIO
from typing import TYPE_CHECKING, Any

from astreaming.errors import FormatError
from astreaming.format.mds.encodings_base import EncodingBase

if TYPE_CHECKING:
    from PIL import Image as _ImageModule

_U32 = struct.Struct("<I")
_PIL_HEADER = struct.Struct("<III")  # width, height, len(mode)
_LIST_HEADER = struct.Struct("<II")  # reserved (always 0), count


def _pil() -> Any:
    from PIL import Image

    return Image


def _open_image(image_module: Any, data: bytes | memoryview, name: str) -> _ImageModule.Image:
    try:
        image: _ImageModule.Image = image_module.open(BytesIO(data))
    except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError is an OSError
        raise FormatError(f"MDS '{name}' value is not a readable image: {err}") from err
    return image


class PILEncoding(EncodingBase):
    """``pil``: width, height, mode and raw ``Image.tobytes()`` (no palette); decodes via ``frombytes``."""

    name = "pil"

    def __init__(self) -> None:
        self._image = _pil()

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, self._image.Image):
            raise self._reject(value, "a PIL.Image.Image")
        mode: bytes = value.mode.encode("utf-8")
        width, height = value.size
        raw: bytes = value.tobytes()
        return _PIL_HEADER.pack(width, height, len(mode)) + mode + raw

    def decode(self, data: bytes | memoryview) -> Any:
        try:
            width, height, mode_len = _PIL_HEADER.unpack_from(data)
            start = _PIL_HEADER.size + mode_len
            mode = str(data[_PIL_HEADER.size : start], "utf-8")
            return self._image.frombytes(mode, (width, height), bytes(data[start:]))
        except (struct.error, ValueError) as err:
            raise FormatError(f"malformed MDS 'pil' value ({len(data)} bytes): {err}") from err


class JPEGEncoding(EncodingBase):
    """``jpeg``: the original file bytes of a ``JpegImageFile`` opened from a file, else Pillow's encoder.

    Decodes to a lazily opened ``PIL.Image`` over the stored bytes.
    """

    name = "jpeg"

    def __init__(self) -> None:
        self._image = _pil()
        from PIL.JpegImagePlugin import JpegImageFile

        self._jpeg_file = JpegImageFile

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, self._image.Image):
            raise self._reject(value, "a PIL.Image.Image")
        filename = getattr(value, "filename", None)
        if isinstance(value, self._jpeg_file) and filename and os.path.isfile(filename):
            # Re-encoding would lose quality: keep the file the image came from, byte for byte.
            with open(filename, "rb") as file:
                return file.read()
        out = BytesIO()
        value.save(out, format="JPEG")
        return out.getvalue()

    def decode(self, data: bytes | memoryview) -> Any:
        return _open_image(self._image, data, self.name)


class PNGEncoding(EncodingBase):
    """``png``: Pillow's PNG encoder; decodes to a lazily opened ``PIL.Image``."""

    name = "png"

    def __init__(self) -> None:
        self._image = _pil()

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, self._image.Image):
            raise self._reject(value, "a PIL.Image.Image")
        out = BytesIO()
        value.save(out, format="PNG")
        return out.getvalue()

    def decode(self, data: bytes | memoryview) -> Any:
        return _open_image(self._image, data, self.name)


def _split_sizes(data: bytes | memoryview, count: int, pos: int, name: str) -> list[bytes | memoryview]:
    """Cuts ``count`` length-prefixed items (sizes table at ``pos``) out of ``data``."""
    sizes = struct.unpack_from(f"<{count}I", data, pos)
    pos += 4 * count
    if pos + sum(sizes) != len(data):
        raise FormatError(f"malformed MDS '{name}' value: item sizes do not add up to {len(data)} bytes")
    items = []
    for size in sizes:
        items.append(data[pos : pos + size])
        pos += size
    return items


class ImageListEncoding(EncodingBase):
    """``list[pil]`` / ``list[jpeg]`` / ``list[png]``: a list of images, each with the element encoding.

    Layout: ``u32 0`` (reserved), ``u32 n``, ``u32 size[n]``, then the n encoded elements.
    """

    def __init__(self, element: EncodingBase) -> None:
        self.element = element
        self.name = f"list[{element.name}]"

    def _encode(self, value: Any) -> bytes:
        if not isinstance(value, (list, tuple)):
            raise self._reject(value, "a list of images")
        parts = [self.element.encode(item) for item in value]
        sizes = struct.pack(f"<{len(parts)}I", *map(len, parts))
        return b"".join([_LIST_HEADER.pack(0, len(parts)), sizes, *parts])

    def decode(self, data: bytes | memoryview) -> list[Any]:
        try:
            _, count = _LIST_HEADER.unpack_from(data)
            items = _split_sizes(data, count, _LIST_HEADER.size, self.name)
        except struct.error as err:
            raise FormatError(f"malformed MDS '{self.name}' value ({len(data)} bytes): {err}") from err
        decode = self.element.decode
        return [decode(item) for item in items]


def image_list(element: str) -> ImageListEncoding:
    """``list[<element>]`` of ``pil``, ``jpeg`` or ``png`` (the registry's factory)."""
    kinds: dict[str, type[EncodingBase]] = {"pil": PILEncoding, "jpeg": JPEGEncoding, "png": PNGEncoding}
    return ImageListEncoding(kinds[element]())


class JPEGArrayEncoding(EncodingBase):
    """``jpeg_array`` (alias ``jpegarray``): a non-empty sequence of JPEG-encoded ``bytes``.

    Layout: ``u32 n``, ``u32 size[n]``, the n byte strings. Decodes to a list of PIL images (asymmetric,
    as in mosaicml-streaming).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._image = _pil()

    def _encode(self, value: Any) -> bytes:
        if isinstance(value, (str, bytearray, memoryview)) or not isinstance(value, (list, tuple)):
            raise self._reject(value, "a list of JPEG bytes")
        if not value:
            raise FormatError(f"MDS '{self.name}' encoding needs at least one image, got an empty list")
        for item in value:
            if not isinstance(item, (bytes, bytearray, memoryview)):
                raise self._reject(item, "JPEG-encoded bytes for each item")
        sizes = struct.pack(f"<I{len(value)}I", len(value), *(len(item) for item in value))
        return b"".join([sizes, *map(bytes, value)])

    def decode(self, data: bytes | memoryview) -> list[Any]:
        try:
            (count,) = _U32.unpack_from(data)
            items = _split_sizes(data, count, _U32.size, self.name)
        except struct.error as err:
            raise FormatError(f"malformed MDS '{self.name}' value ({len(data)} bytes): {err}") from err
        return [_open_image(self._image, item, self.name) for item in items]
