"""The registry of MDS column encodings (the complete mosaicml-streaming 0.13 set).

``get_encoding(spec)`` turns a column spec (``"int32"``, ``"ndarray:int16:2,3"``, ``"list[jpeg]"``, ...)
into an :class:`Encoding` object, built once per spec string. Readers keep the objects and call their
``decode`` per sample, so the hot path holds no lookups or spec parsing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol

from astreaming.errors import ConfigError, FormatError, WrongValueType
from astreaming.format.mds.custom import UserEncoding, custom_encodings
from astreaming.format.mds.encodings_base import EncodingBase
from astreaming.format.mds.encodings_scalar import (
    NUMPY_SCALAR_NAMES,
    BytesEncoding,
    IntEncoding,
    JSONEncoding,
    NumpyScalarEncoding,
    PickleEncoding,
    StrDecimalEncoding,
    StrEncoding,
    StrFloatEncoding,
    StrIntEncoding,
)


class Encoding(Protocol):
    """One MDS column encoding.

    Attributes:
        name: canonical spec, e.g. ``"int32"``, ``"ndarray:int16:2,3"``, ``"list[jpeg]"``.
        size: fixed encoded size in bytes, or None for a variable-size encoding.
        unsafe: True only for ``pkl`` (readers decode it only with ``allow_unsafe_types=True``).
    """

    name: str
    size: int | None
    unsafe: bool

    def encode(self, value: Any) -> bytes:
        """Encodes a value; ``bytes`` values pass through unchanged. Raises FormatError on bad values."""
        ...

    def decode(self, data: bytes | memoryview) -> Any:
        """Decodes a stored value into what mosaicml-streaming returns for it."""
        ...


def _image(factory: str, *args: str) -> Callable[[], EncodingBase]:
    """The image encoding ``factory(*args)``: its module is imported when a column first uses one (a
    dataset without images never imports it)."""

    def make() -> EncodingBase:
        from astreaming.format.mds import encodings_image

        built: EncodingBase = getattr(encodings_image, factory)(*args)
        return built

    return make


_SIMPLE: dict[str, Callable[[], EncodingBase]] = {
    "bytes": BytesEncoding,
    "str": StrEncoding,
    "int": IntEncoding,
    **{name: functools.partial(NumpyScalarEncoding, name) for name in NUMPY_SCALAR_NAMES},
    "str_int": StrIntEncoding,
    "str_float": StrFloatEncoding,
    "str_decimal": StrDecimalEncoding,
    "json": JSONEncoding,
    "pkl": PickleEncoding,
    "pil": _image("PILEncoding"),
    "jpeg": _image("JPEGEncoding"),
    "png": _image("PNGEncoding"),
    "list[pil]": _image("image_list", "pil"),
    "list[jpeg]": _image("image_list", "jpeg"),
    "list[png]": _image("image_list", "png"),
    "jpeg_array": _image("JPEGArrayEncoding", "jpeg_array"),
    "jpegarray": _image("JPEGArrayEncoding", "jpegarray"),
}
_NAMES = sorted([*_SIMPLE, "ndarray"])


@functools.lru_cache(maxsize=512)
def _build(spec: str) -> EncodingBase:
    factory = _SIMPLE.get(spec)
    if factory is not None:
        return factory()
    name, sep, config = spec.partition(":")
    if name == "ndarray":
        from astreaming.format.mds.encodings_ndarray import NDArrayEncoding

        try:
            return NDArrayEncoding.from_config(config if sep else None)
        except FormatError as err:
            raise FormatError(f"invalid MDS encoding {spec!r}: {err}") from None
    if name in _SIMPLE:
        raise FormatError(f"invalid MDS encoding {spec!r}: only 'ndarray' takes ':' options")
    raise FormatError(f"unknown MDS encoding {spec!r} (known: {', '.join(_NAMES)})")


def get_encoding(spec: str) -> Encoding:
    """Returns the encoding for a column spec, built once per spec string.

    Args:
        spec: an encoding name (``"int"``, ``"jpeg"``, ...) or an ndarray spec
            (``"ndarray"``, ``"ndarray:float32"``, ``"ndarray:uint8:3,4"``).

    Returns:
        The shared :class:`Encoding` object.

    Raises:
        FormatError: the spec is unknown or invalid; the message names it.
    """
    if not isinstance(spec, str):
        raise FormatError(f"MDS encoding spec must be a str, got {type(spec).__name__}: {spec!r:.80}")
    custom = custom_encodings.get(spec)
    return custom if custom is not None else _build(spec)


def is_encoding(spec: str) -> bool:
    """Tells whether ``spec`` names a valid MDS encoding. Never raises (mosaic's version can)."""
    try:
        get_encoding(spec)
    except FormatError:
        return False
    return True


def encoding_names() -> list[str]:
    """The built-in encoding names (mosaicml-streaming's ``get_mds_encodings()``), sorted.

    Names added with :func:`register_encoding` are in :data:`encodings_registry`.
    """
    return list(_NAMES)


def encode_value(spec_or_enc: str | Encoding, value: Any, *, column: str) -> bytes:
    """Encodes one column value and checks the length of fixed-size encodings.

    Args:
        spec_or_enc: the column's encoding spec or an :class:`Encoding` from :func:`get_encoding`.
        value: the value; ``bytes`` pass through unchanged (and are still length-checked).
        column: the column name, used in error messages.

    Returns:
        The encoded bytes.

    Raises:
        FormatError: the value cannot be encoded, or a fixed-size column got the wrong number of bytes
            (mosaicml-streaming raised KeyError there); the message names the column.
    """
    enc = get_encoding(spec_or_enc) if isinstance(spec_or_enc, str) else spec_or_enc
    try:
        data = enc.encode(value)
    except FormatError as err:
        kind = WrongValueType if isinstance(err, WrongValueType) else FormatError
        raise kind(f"column {column!r}: {err}") from err
    if enc.size is not None and len(data) != enc.size:
        raise FormatError(
            f"column {column!r} ({enc.name}): unexpected data size {len(data)} bytes, expected {enc.size}"
        )
    return data


_classes: dict[str, Callable[[], Any]] = {}


def register_encoding(name: str, cls: Callable[[], Any]) -> None:
    """Make ``name`` an MDS column encoding implemented by instances of ``cls`` (mosaic's custom encodings).

    Args:
        name: The column encoding name written into ``index.json`` (no ``:``; not a built-in name).
            Registering a name again replaces its class.
        cls: A class (or factory without arguments) whose instances have ``encode``, ``decode`` and
            ``size``; usually an :class:`~astreaming.format.mds.custom.MDSEncoding` subclass.

    Raises:
        ConfigError: the name is a built-in encoding or not a plain name, or ``cls`` does not make
            objects with ``encode`` and ``decode``.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(f"register_encoding: name must be a non-empty str without ':', got {name!r}")
    if name in _NAMES:
        raise ConfigError(f"register_encoding: {name!r} is a built-in MDS encoding and cannot be replaced")
    impl = cls()
    if not (callable(getattr(impl, "encode", None)) and callable(getattr(impl, "decode", None))):
        raise ConfigError(f"register_encoding({name!r}): {cls!r} makes objects without encode/decode")
    custom_encodings[name] = UserEncoding(name, impl)
    _classes[name] = cls


class _Registry(MutableMapping[str, Callable[[], Any]]):
    """The registered encoding classes; ``registry[name] = cls`` registers (mosaic's ``_encodings``)."""

    def __getitem__(self, name: str) -> Callable[[], Any]:
        return _classes[name]

    def __setitem__(self, name: str, cls: Callable[[], Any]) -> None:
        register_encoding(name, cls)

    def __delitem__(self, name: str) -> None:
        del _classes[name]
        del custom_encodings[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(_classes))

    def __len__(self) -> int:
        return len(_classes)


#: User-registered encoding classes by name; assigning to it registers (see :func:`register_encoding`).
encodings_registry: MutableMapping[str, Callable[[], Any]] = _Registry()


__all__ = [
    "Encoding",
    "encode_value",
    "encoding_names",
    "encodings_registry",
    "get_encoding",
    "is_encoding",
    "register_encoding",
]
