"""Image encodings: pil / jpeg / png, their list[...] forms and jpeg_array: layouts, round trips, errors."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, JpegImagePlugin, PngImagePlugin

from astreaming.errors import FormatError
from astreaming.format.mds.encodings import get_encoding

settings.register_profile("astreaming-image", max_examples=25, deadline=None)
settings.load_profile("astreaming-image")

MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F")


@st.composite
def images(draw: st.DrawFn, modes: tuple[str, ...] = MODES) -> Image.Image:
    mode = draw(st.sampled_from(modes))
    width = draw(st.integers(1, 9))
    height = draw(st.integers(1, 9))
    size = len(Image.new(mode, (width, height)).tobytes())
    image = Image.frombytes(mode, (width, height), draw(st.binary(min_size=size, max_size=size)))
    if mode == "P":
        image.putpalette(draw(st.binary(min_size=768, max_size=768)))
    return image


def _jpeg_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG")
    return out.getvalue()


@given(images())
def test_pil_layout_and_round_trip(image: Image.Image) -> None:
    enc = get_encoding("pil")
    data = enc.encode(image)
    mode = image.mode.encode()
    assert data[:12] == struct.pack("<III", image.width, image.height, len(mode))
    assert data[12 : 12 + len(mode)] == mode
    assert data[12 + len(mode) :] == image.tobytes()
    out = enc.decode(data)
    assert type(out) is Image.Image and out.format is None
    assert (out.mode, out.size, out.tobytes()) == (image.mode, image.size, image.tobytes())
    assert enc.decode(memoryview(data)).tobytes() == image.tobytes()


@given(images(("1", "L", "LA", "P", "RGB", "RGBA", "I;16")))
def test_png_round_trip_is_lossless_and_keeps_the_palette(image: Image.Image) -> None:
    enc = get_encoding("png")
    data = enc.encode(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    out = enc.decode(data)
    assert isinstance(out, PngImagePlugin.PngImageFile)
    assert (out.mode, out.size, out.tobytes()) == (image.mode, image.size, image.tobytes())
    if image.mode == "P":
        assert out.getpalette() == image.getpalette()


@given(images(("L", "RGB")))
def test_jpeg_of_in_memory_image_is_reencoded(image: Image.Image) -> None:
    enc = get_encoding("jpeg")
    data = enc.encode(image)
    out_buf = io.BytesIO()
    image.save(out_buf, format="JPEG")  # Pillow's encoder at its default quality (75), as mosaic
    assert data == out_buf.getvalue()
    out = enc.decode(data)
    assert isinstance(out, JpegImagePlugin.JpegImageFile)
    assert (out.mode, out.size) == (image.mode, image.size)


def test_jpeg_of_a_jpeg_file_keeps_the_file_bytes(tmp_path: Path) -> None:
    original = _jpeg_bytes(Image.new("RGB", (5, 4), (10, 200, 30))) + b"trailing bytes kept verbatim"
    path = tmp_path / "a.jpg"
    path.write_bytes(original)
    with Image.open(path) as image:
        assert get_encoding("jpeg").encode(image) == original
        # Opened from memory (no file name): re-encoded instead.
    with Image.open(io.BytesIO(original)) as image:
        data = get_encoding("jpeg").encode(image)
    assert data != original and data.startswith(b"\xff\xd8")


@pytest.mark.parametrize("element", ["pil", "png", "jpeg"])
@given(st.lists(images(("L", "RGB")), max_size=3))
def test_image_lists_layout_and_round_trip(element: str, items: list[Image.Image]) -> None:
    enc = get_encoding(f"list[{element}]")
    data = enc.encode(items)
    parts = [get_encoding(element).encode(item) for item in items]
    header = struct.pack(f"<II{len(parts)}I", 0, len(parts), *map(len, parts))
    assert data == header + b"".join(parts)
    out = enc.decode(data)
    assert type(out) is list and len(out) == len(items)
    for got, want in zip(out, items, strict=True):
        assert (got.mode, got.size) == (want.mode, want.size)
        if element != "jpeg":
            assert got.tobytes() == want.tobytes()
    assert enc.decode(memoryview(data))[0:0] == []


def test_image_list_accepts_pre_encoded_elements() -> None:
    jpeg = _jpeg_bytes(Image.new("RGB", (3, 3)))
    data = get_encoding("list[jpeg]").encode([jpeg])
    assert data == struct.pack("<III", 0, 1, len(jpeg)) + jpeg


@given(st.lists(images(("L", "RGB")), min_size=1, max_size=3))
def test_jpeg_array_layout_and_asymmetric_decode(items: list[Image.Image]) -> None:
    blobs = [_jpeg_bytes(item) for item in items]
    for name in ("jpeg_array", "jpegarray"):
        enc = get_encoding(name)
        data = enc.encode(blobs)
        assert data == struct.pack(f"<I{len(blobs)}I", len(blobs), *map(len, blobs)) + b"".join(blobs)
        out = enc.decode(data)
        assert [type(img) for img in out] == [JpegImagePlugin.JpegImageFile] * len(items)
        assert [img.size for img in out] == [item.size for item in items]


@pytest.mark.parametrize(
    ("spec", "value", "match"),
    [
        ("pil", np.zeros((2, 2), np.uint8), "PIL.Image"),
        ("pil", "image.png", "PIL.Image"),
        ("jpeg", None, "PIL.Image"),
        ("png", [Image.new("L", (1, 1))], "PIL.Image"),
        ("jpeg", Image.new("RGBA", (2, 2)), "RGBA"),  # JPEG cannot hold alpha
        ("list[pil]", Image.new("L", (1, 1)), "list"),
        ("list[png]", [Image.new("L", (1, 1)), 5], "PIL.Image"),
        ("jpeg_array", [], "at least one"),
        ("jpeg_array", b"", None),  # bytes pass through (mosaic), not an error
        ("jpeg_array", "abc", "list"),
        ("jpeg_array", [Image.new("L", (1, 1))], "JPEG-encoded bytes"),
        ("jpegarray", [b"ok", "text"], "JPEG-encoded bytes"),
    ],
)
def test_rejections(spec: str, value: Any, match: str | None) -> None:
    if match is None:
        assert get_encoding(spec).encode(value) == value
        return
    with pytest.raises(FormatError, match=match):
        get_encoding(spec).encode(value)


@pytest.mark.parametrize(
    ("spec", "data"),
    [
        ("pil", b"\x01\x00"),
        ("pil", struct.pack("<III", 2, 2, 2) + b"XX" + b"\x00" * 4),  # unknown mode
        ("pil", struct.pack("<III", 2, 2, 1) + b"L" + b"\x00"),  # too few pixels
        ("png", b"not an image"),
        ("jpeg", b""),
        ("list[pil]", struct.pack("<III", 0, 1, 99)),  # size table points past the end
        ("list[png]", b"\x00\x00"),
        ("jpeg_array", struct.pack("<II", 2, 1)),
        ("jpeg_array", struct.pack("<II", 1, 3) + b"abc"),
    ],
)
def test_malformed_values_raise_format_error(spec: str, data: bytes) -> None:
    with pytest.raises(FormatError):
        get_encoding(spec).decode(data)
