"""``gs://`` through Google Cloud Storage's S3-compatible XML API with HMAC keys.

mosaicml-streaming users authenticate to GCS with ``GCS_KEY`` and ``GCS_SECRET`` (an HMAC key pair),
which it sends through an S3 client at ``https://storage.googleapis.com`` (reference §6). When both
variables are set, :func:`astreaming.storage.registry.backend_for` picks this backend for ``gs://`` URLs
so those setups keep working; otherwise the native :class:`~astreaming.storage.gcs.GCSBackend` is used.
"""

from __future__ import annotations

import os
from typing import Any

from astreaming.errors import ConfigError
from astreaming.storage.s3 import S3Backend

GCS_XML_ENDPOINT = "https://storage.googleapis.com"


def hmac_keys_in_env() -> bool:
    """Whether ``GCS_KEY`` and ``GCS_SECRET`` are both set (mosaic's HMAC mode)."""
    return bool(os.environ.get("GCS_KEY") and os.environ.get("GCS_SECRET"))


class GCSHMACBackend(S3Backend):
    """Backend for ``gs://bucket/key`` signed with a GCS HMAC key (S3 protocol).

    Args:
        timeout: Connect and read timeout in seconds.
        endpoint_url: XML API endpoint (default ``https://storage.googleapis.com``).
        hmac_key: Access id; default ``GCS_KEY``.
        hmac_secret: Secret; default ``GCS_SECRET``.
        **kwargs: Passed to :class:`~astreaming.storage.s3.S3Backend` (``part_size``, ``page_size``, ...).
    """

    scheme = ("gs",)

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        endpoint_url: str | None = None,
        hmac_key: str | None = None,
        hmac_secret: str | None = None,
        **kwargs: Any,
    ) -> None:
        key = hmac_key or os.environ.get("GCS_KEY")
        secret = hmac_secret or os.environ.get("GCS_SECRET")
        if not key or not secret:
            raise ConfigError("GCS HMAC access needs GCS_KEY and GCS_SECRET (or hmac_key= and hmac_secret=)")
        kwargs.setdefault("region", "auto")
        super().__init__(timeout=timeout, access_key_id=key, secret_access_key=secret, **kwargs)
        if hmac_key is None and hmac_secret is None:
            self._env_secrets = frozenset({"_keys"})
        # S3_ENDPOINT_URL is meant for s3:// URLs, not for gs://.
        self.endpoint_url = endpoint_url or GCS_XML_ENDPOINT

    def _reload_env_secrets(self) -> None:
        self._keys = (os.environ.get("GCS_KEY"), os.environ.get("GCS_SECRET"), None)


__all__ = ["GCS_XML_ENDPOINT", "GCSHMACBackend", "hmac_keys_in_env"]
