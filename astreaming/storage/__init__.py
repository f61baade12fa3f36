"""Async storage backends behind one interface (local, file, gs, s3, oci, azure, http).

Usage::

    from astreaming.storage import RetryPolicy, backend_for, with_retries

    policy = RetryPolicy.from_download_retry(download_retry=2, download_timeout=60)
    async with backend_for("gs://bucket/data", timeout=60) as backend:
        url = "gs://bucket/data/shard.00000.mds"
        n = await with_retries(policy, lambda: backend.download(url, dest), url=url, what="download")

Importing this package imports no cloud SDK and not aiohttp: each backend module is imported when its
scheme is first used (see :mod:`astreaming.storage.registry`). The names below are imported on first
use too: a walk of local shards needs only :mod:`astreaming.storage.urls` of this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from astreaming._lazy import lazy_exports

if TYPE_CHECKING:
    from astreaming.storage.base import (
        Backend,
        BackendStats,
        ObjectInfo,
    )
    from astreaming.storage.registry import (
        backend_class,
        backend_for,
        register_backend,
        supported_schemes,
    )
    from astreaming.storage.retry import (
        RetryPolicy,
        RetryStats,
        with_retries,
    )
    from astreaming.storage.urls import (
        join,
        parse_url,
        redact,
    )

_EXPORTS = {
    **dict.fromkeys(["Backend", "BackendStats", "ObjectInfo"], "astreaming.storage.base"),
    **dict.fromkeys(
        ["backend_class", "backend_for", "register_backend", "supported_schemes"],
        "astreaming.storage.registry",
    ),
    **dict.fromkeys(["RetryPolicy", "RetryStats", "with_retries"], "astreaming.storage.retry"),
    **dict.fromkeys(["join", "parse_url", "redact"], "astreaming.storage.urls"),
}

__all__ = [
    "Backend",
    "BackendStats",
    "ObjectInfo",
    "RetryPolicy",
    "RetryStats",
    "backend_class",
    "backend_for",
    "join",
    "parse_url",
    "redact",
    "register_backend",
    "supported_schemes",
    "with_retries",
]

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
