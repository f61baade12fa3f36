"""``oci://bucket@namespace/key`` backend: Oracle Object Storage through its S3-compatible API.

Requests go to ``https://{namespace}.compat.objectstorage.{region}.oraclecloud.com`` with path-style
addressing, signed with an OCI *Customer Secret Key* given as ordinary AWS credentials
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or an AWS profile). The region comes from ``region=``,
else ``OCI_REGION``, else the ``region`` of the profile in ``~/.oci/config`` (``OCI_CONFIG_FILE``,
``OCI_CLI_PROFILE`` override the file and profile). ``endpoint_url=`` or ``OCI_ENDPOINT_URL`` replace the
endpoint for every namespace (tests, proxies, private endpoints).
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any

from astreaming.errors import ConfigError
from astreaming.storage.s3 import S3Backend
from astreaming.storage.urls import parse_url, redact


def oci_config_region(config_file: str | None = None, profile: str | None = None) -> str | None:
    """The ``region`` of ``profile`` (default ``DEFAULT``) in the OCI CLI config file, if any."""
    path = Path(config_file or os.environ.get("OCI_CONFIG_FILE") or "~/.oci/config").expanduser()
    if not path.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as e:
        raise ConfigError(f"cannot parse OCI config file {path}: {e}") from e
    section = profile or os.environ.get("OCI_CLI_PROFILE") or "DEFAULT"
    if section == "DEFAULT":
        return parser.defaults().get("region")
    return parser.get(section, "region", fallback=None)


class OCIBackend(S3Backend):
    """Backend for ``oci://bucket@namespace/key``.

    Args:
        timeout: Connect and read timeout in seconds.
        region: OCI region (``us-ashburn-1``); see the module docstring for the fallbacks.
        endpoint_url: Endpoint used for every namespace instead of Oracle's.
        config_file: OCI CLI config file to read the region from.
        oci_profile: Profile of that file.
        **kwargs: Passed to :class:`~astreaming.storage.s3.S3Backend` (``profile``, ``part_size``, ...).
    """

    scheme = ("oci",)

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        region: str | None = None,
        endpoint_url: str | None = None,
        config_file: str | None = None,
        oci_profile: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("addressing_style", "path")
        super().__init__(timeout=timeout, **kwargs)
        # S3_ENDPOINT_URL is for S3 URLs; OCI has its own override.
        self.endpoint_url = endpoint_url or os.environ.get("OCI_ENDPOINT_URL") or None
        self.region = region or os.environ.get("OCI_REGION") or oci_config_region(config_file, oci_profile)

    def _locate(self, url: str) -> tuple[str | None, str, str]:
        parsed = parse_url(url)
        if parsed.scheme != "oci":
            raise ConfigError(f"OCIBackend cannot serve {redact(url)!r}")
        bucket, at, namespace = parsed.bucket.partition("@")
        if not at or not bucket or not namespace:
            raise ConfigError(f"OCI URL {url!r} must look like oci://bucket@namespace/key")
        return namespace, bucket, parsed.key

    def _endpoint(self, endpoint: str | None) -> str | None:
        if self.endpoint_url:
            return self.endpoint_url
        if not self.region:
            raise ConfigError("no OCI region: pass region=, set OCI_REGION or add region= to ~/.oci/config")
        return f"https://{endpoint}.compat.objectstorage.{self.region}.oraclecloud.com"


__all__ = ["OCIBackend", "oci_config_region"]
