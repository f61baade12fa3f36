"""The base class every MDS encoding derives from: pass-through of ``bytes`` and uniform encode errors."""

from __future__ import annotations

from typing import Any

from astreaming.errors import FormatError, WrongValueType

# Exceptions that a value of the wrong type or range raises inside an encoder (numpy, json, PIL, struct).
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, AttributeError, KeyError, IndexError, OSError)


class EncodingBase:
    """One MDS column encoding: a canonical ``name``, a fixed ``size`` (or None) and encode/decode.

    Subclasses implement :meth:`_encode` (never sees ``bytes``) and :meth:`decode`.
    """

    name: str
    size: int | None = None
    unsafe: bool = False

    def encode(self, value: Any) -> bytes:
        """Encodes ``value`` for this column.

        A ``bytes`` value is returned unchanged whatever the encoding, as mosaicml-streaming does: callers
        may pre-encode values.

        Args:
            value: the sample value.

        Returns:
            The encoded bytes.

        Raises:
            FormatError: the value cannot be stored with this encoding (wrong type, out of range, ...).
        """
        if isinstance(value, bytes):
            return value
        try:
            return self._encode(value)
        except FormatError:
            raise
        except _ENCODE_ERRORS as err:
            # A wrong type stays catchable as the TypeError/AttributeError mosaic raised.
            kind = WrongValueType if isinstance(err, (TypeError, AttributeError)) else FormatError
            raise kind(f"cannot encode {type(value).__name__} value as MDS '{self.name}': {err}") from err

    def _encode(self, value: Any) -> bytes:
        raise NotImplementedError  # pragma: no cover - every concrete encoding overrides it

    def decode(self, data: bytes | memoryview) -> Any:
        """Decodes one stored value (exactly the bytes :meth:`encode` produced)."""
        raise NotImplementedError  # pragma: no cover - every concrete encoding overrides it

    def _reject(self, value: Any, expected: str) -> FormatError:
        return WrongValueType(
            f"MDS '{self.name}' encoding expects {expected}, got {type(value).__name__}: {value!r:.80}"
        )

    def __repr__(self) -> str:
        return f"<MDS encoding {self.name!r}>"
