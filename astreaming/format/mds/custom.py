"""MDS encodings defined by users, as mosaicml-streaming allowed (a class with ``encode``/``decode``).

A user encoding is a class whose instances have ``encode(value) -> bytes`` and ``decode(data) -> value``,
and a ``size`` attribute (bytes of every value for a fixed-size encoding, ``None`` otherwise), like
mosaic's ``Encoding`` subclasses. Registering it under a name (``register_encoding`` in
:mod:`astreaming.format.mds.encodings`) makes that name a column encoding for writers and readers::

    class Complex128(MDSEncoding):
        size = 16
        def encode(self, value): return np.complex128(value).tobytes()
        def decode(self, data): return np.frombuffer(data, np.complex128)[0]

    register_encoding("complex128", Complex128)

Register it at import time of a module the DataLoader workers also import (the module defining the
dataset, say): a worker started by ``spawn`` only knows encodings registered by the modules it imports.
"""

from __future__ import annotations

from typing import Any

from astreaming.errors import ConfigError, FormatError
from astreaming.format.mds.encodings_base import EncodingBase

__all__ = ["MDSEncoding", "UserEncoding", "custom_encodings"]


class MDSEncoding:
    """Base class of a user-defined MDS column encoding (mosaic's ``Encoding``).

    Subclasses implement :meth:`encode` and :meth:`decode`, and set :attr:`size` for a fixed-size
    encoding. A ``bytes`` value given to a writer is stored unchanged whatever the encoding (as in
    mosaic: callers may pre-encode values), so :meth:`encode` never sees one from a writer.

    Attributes:
        size: Bytes of every encoded value, or ``None`` for a variable-size encoding.
    """

    size: int | None = None

    def encode(self, obj: Any) -> bytes:
        """Encodes one value."""
        raise NotImplementedError(f"{type(self).__name__} must define encode (a user MDS encoding)")

    def decode(self, data: bytes) -> Any:
        """Decodes what :meth:`encode` produced."""
        raise NotImplementedError(f"{type(self).__name__} must define decode (a user MDS encoding)")


#: The encodings registered with ``register_encoding``, by name (adapted to the reader's interface).
custom_encodings: dict[str, EncodingBase] = {}


class UserEncoding(EncodingBase):
    """A user encoding seen through the interface of the built-in ones (errors typed, input as bytes)."""

    def __init__(self, name: str, impl: Any) -> None:
        self.name = name
        self.impl = impl
        size = getattr(impl, "size", None)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"register_encoding({name!r}): size must be an int > 0 or None, got {size!r}")
        self.size = size

    def _encode(self, value: Any) -> bytes:
        data = self.impl.encode(value)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(
                f"MDS encoding {self.name!r}: encode() returned {type(data).__name__}, not bytes"
            )
        return bytes(data)

    def decode(self, data: bytes | memoryview) -> Any:
        # User code may call bytes methods (``.decode()``); the reader hands out bytes already.
        return self.impl.decode(data if type(data) is bytes else bytes(data))
