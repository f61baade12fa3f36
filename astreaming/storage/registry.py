"""Pick the backend for a URL by its scheme.

Backends are registered by dotted path and imported on first use, so ``import astreaming`` imports no
cloud SDK and a missing optional extra (azure) only fails when its scheme is actually used.

Schemes (see :mod:`astreaming.storage.urls` for the URL forms; each class documents its options):

- ``""`` (plain path) and ``file``: :class:`~astreaming.storage.local.LocalBackend`;
- ``gs``: :class:`~astreaming.storage.gcs.GCSBackend`, or
  :class:`~astreaming.storage.gcs_hmac.GCSHMACBackend` when ``GCS_KEY`` and ``GCS_SECRET`` are set;
- ``s3``: :class:`~astreaming.storage.s3.S3Backend`;
- ``oci``: :class:`~astreaming.storage.oci.OCIBackend`;
- ``azure``: ``astreaming.storage.azure.AzureBackend`` (extra ``astreaming[azure]``);
- ``http`` and ``https``: :class:`~astreaming.storage.http.HTTPBackend` (read-only).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.storage.base import Backend
from astreaming.storage.urls import redact, scheme_of

# scheme -> "module:ClassName"
_REGISTRY: dict[str, str] = {
    "": "astreaming.storage.local:LocalBackend",
    "file": "astreaming.storage.local:LocalBackend",
    "gs": "astreaming.storage.gcs:GCSBackend",
    "s3": "astreaming.storage.s3:S3Backend",
    "oci": "astreaming.storage.oci:OCIBackend",
    "azure": "astreaming.storage.azure:AzureBackend",
    "http": "astreaming.storage.http:HTTPBackend",
    "https": "astreaming.storage.http:HTTPBackend",
}

_REGISTRY_DEFAULT_GS = _REGISTRY["gs"]

# Schemes people type by mistake, with what they meant (reference §6: the mosaic README says gcs://).
_HINTS = {"gcs": "gs", "az": "azure", "abfs": "azure", "abfss": "azure"}


def register_backend(scheme: str, target: str | type[Backend]) -> None:
    """Register (or replace) the backend class for ``scheme``.

    Args:
        scheme: Lower-case URL scheme without ``://``.
        target: A Backend subclass, or ``"module:ClassName"`` to import lazily.
    """
    if isinstance(target, str):
        _REGISTRY[scheme.lower()] = target
    else:
        _REGISTRY[scheme.lower()] = f"{target.__module__}:{target.__qualname__}"


def supported_schemes() -> tuple[str, ...]:
    """The schemes :func:`backend_for` accepts (``""`` is a plain local path)."""
    return tuple(sorted(_REGISTRY))


def backend_class(url: str) -> type[Backend]:
    """The Backend subclass serving ``url`` (imports its module).

    Raises:
        UnknownOptionError: The scheme is not supported (the message suggests the right one).
        ConfigError: The backend's optional dependency is not installed.
    """
    scheme = scheme_of(url)
    target = _REGISTRY.get(scheme)
    if scheme == "gs" and target == _REGISTRY_DEFAULT_GS:
        # mosaic's HMAC mode: GCS_KEY + GCS_SECRET select the S3-protocol client (reference §6).
        from astreaming.storage.gcs_hmac import hmac_keys_in_env

        if hmac_keys_in_env():
            target = "astreaming.storage.gcs_hmac:GCSHMACBackend"
    if target is None:
        hint = f"; did you mean {_HINTS[scheme]}://?" if scheme in _HINTS else ""
        known = ", ".join(f"{s}://" for s in supported_schemes() if s) + " and local paths"
        raise UnknownOptionError(
            f"unsupported storage scheme {scheme}:// in {redact(url)!r}{hint} (known: {known})"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        extra = " (pip install 'astreaming[azure]')" if scheme == "azure" else ""
        raise ConfigError(f"the {scheme}:// backend needs a package that is not installed: {e}{extra}") from e
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"registered backend {target} for {scheme}:// is not a Backend subclass")
    return cls


def backend_for(url: str, *, timeout: float = 60.0, **options: Any) -> Backend:
    """Create (not yet open) the backend serving ``url``.

    The object is cheap and holds no connection: use it as ``async with backend_for(url) as b:`` inside
    the event loop that will use it. One backend instance serves every URL of its scheme (any bucket).

    Args:
        url: Any URL or path of the scheme wanted (only the scheme is looked at).
        timeout: Per-request timeout in seconds (``download_timeout``).
        **options: Backend-specific keyword arguments (endpoint overrides, credentials, ...). Each
            backend documents its own; an option the backend does not take raises UnknownOptionError.

    Raises:
        UnknownOptionError: Unknown scheme or an option the backend does not accept.
        ConfigError: Invalid option value or a missing optional dependency.
    """
    cls = backend_class(url)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            accepted = sorted(n for n in params if n not in ("self", "timeout"))
            raise UnknownOptionError(
                f"{cls.__name__} (for {scheme_of(url) or 'local'} URLs) does not accept option(s) "
                f"{', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}"
            )
    try:
        return cls(timeout=timeout, **options)
    except TypeError as e:
        # Backends that forward **kwargs (OCI -> S3) reject unknown options only here.
        if "unexpected keyword argument" not in str(e):
            raise
        raise UnknownOptionError(f"{cls.__name__}: {e}") from e


__all__ = ["backend_class", "backend_for", "register_backend", "supported_schemes"]
