"""Authorization for the ``gs://`` backend: credentials when there are any, anonymous access otherwise.

Decision, once per backend instance:

1. an emulator, or ``anonymous=True``: no credentials;
2. explicit credentials (``service_file=``, ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application
   default credentials file): always used; if no token can be obtained from them the request fails
   with PermissionDenied naming the cause, never silently anonymous;
3. nothing configured: the GCE metadata server is asked (as google-auth does) when it answers within a
   second; otherwise requests go out anonymous (public buckets), unless ``anonymous=False``.
"""

from __future__ import annotations

import logging
import os

import aiohttp
from gcloud.aio.auth import Token
from gcloud.aio.storage.storage import SCOPES

from astreaming.errors import ConfigError, PermissionDenied

log = logging.getLogger(__name__)


async def metadata_server_reachable(session: aiohttp.ClientSession, timeout: float = 1.0) -> bool:
    """Whether a GCE metadata server answers (``GCE_METADATA_HOST``/``GCE_METADATA_ROOT`` move it)."""
    host = os.environ.get("GCE_METADATA_HOST") or os.environ.get(
        "GCE_METADATA_ROOT", "metadata.google.internal"
    )
    try:
        async with session.get(
            f"http://{host}/computeMetadata/v1/",
            headers={"Metadata-Flavor": "Google"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return resp.headers.get("Metadata-Flavor") == "Google"
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


class GCSAuth:
    """Produces the ``Authorization`` header for GCS requests (see the module docstring for the rules).

    Args:
        session: The backend's aiohttp session (tokens are fetched through it).
        service_file: Explicit credentials file, or ``None`` for gcloud's lookup.
        anonymous: ``True``: never authenticate; ``False``: require credentials; ``None``: decide.
    """

    def __init__(
        self, session: aiohttp.ClientSession, *, service_file: str | None, anonymous: bool | None
    ) -> None:
        self.session = session
        self.anonymous = anonymous
        self.token: Token | None = None
        self.explicit = False
        self._probed = False
        if anonymous:
            return
        try:
            self.token = Token(service_file=service_file, session=session, scopes=SCOPES)  # type: ignore[arg-type]
        except Exception as e:  # an unreadable or malformed key file
            raise ConfigError(
                f"cannot load Google Cloud credentials ({service_file or 'default'}): {e}"
            ) from e
        # Non-empty service data means a key file was found (explicit or gcloud's ADC file).
        self.explicit = bool(self.token.service_data)

    async def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer ..."}``, or ``{}`` for anonymous access."""
        if self.anonymous or self.token is None:
            return {}
        if not self.explicit and not self._probed:
            self._probed = True
            if not await metadata_server_reachable(self.session):
                if self.anonymous is False:
                    raise PermissionDenied("no Google Cloud credentials found and anonymous=False")
                log.info("no Google Cloud credentials found; using anonymous access (public buckets)")
                self.anonymous = True
                return {}
        try:
            token = await self.token.get()
        except Exception as e:
            raise PermissionDenied(f"cannot obtain a Google Cloud access token: {e}") from e
        return {"Authorization": f"Bearer {token}"}


__all__ = ["GCSAuth", "metadata_server_reachable"]
