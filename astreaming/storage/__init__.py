"""Async storage backends behind one interface (local, file, gs, s3, oci, azure, http).

Usage::

    from astreaming.storage import RetryPolicy, backend_for, with_retries

    policy = RetryPolicy.from_download_retry(download_retry=2, download_timeout=60)
    async with backend_for("gs://bucket/data", timeout=60) as backend:
        url = "gs://bucket/data/shard.00000.mds"
        n = await with_retries(policy, lambda: backend.download(url, dest), url=url, what="download")

Importing this package imports no cloud SDK and not aiohttp: each backend module is imported when its
scheme is first used (see :mod:`astreaming.storage.registry`).
"""

from astreaming.storage.base import Backend, BackendStats, ObjectInfo
from astreaming.storage.registry import backend_class, backend_for, register_backend, supported_schemes
from astreaming.storage.retry import RetryPolicy, RetryStats, with_retries
from astreaming.storage.urls import join, parse_url, redact

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
