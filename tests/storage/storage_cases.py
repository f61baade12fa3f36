"""What a conformance test needs to know about one backend under test.

A :class:`StorageCase` names a fresh URL prefix for one test, builds (unopened) backends for it and
seeds objects out of band (directly on the server or disk), so the suite never checks a backend
against itself. Other backends plug in by providing a ``case`` fixture that returns one (see
``test_storage_conformance.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from astreaming.storage.base import Backend
from astreaming.storage.urls import join
from astreaming.testing.servers import FakeGCSServer

GCS_BUCKET = "astreaming-gcs"
S3_BUCKET = "astreaming-s3"


def gcs_put(server: FakeGCSServer, bucket: str, key: str, data: bytes) -> None:
    """Upload an object straight to fake-gcs-server (simple media upload), bypassing the backend."""
    server.put_object(bucket, key, data)


@dataclass
class StorageCase:
    """One backend under test, with a prefix of its own.

    Attributes:
        name: Short name for messages (``local``, ``gs``, ...).
        base: URL prefix owned by this test, ending with ``/``.
        make: Builds a new, unopened backend (with test-friendly options such as tiny list pages).
        put: Seeds ``data`` at ``base + key`` without going through the backend.
        writable: Whether upload/delete are supported (http is read-only).
        listable: Whether listing is supported.
        page_size: Listing page size the backend was built with (``None``: no pages).
        large_upload: Size of a file that takes the multipart/resumable path.
    """

    name: str
    base: str
    make: Callable[[], Backend]
    put: Callable[[str, bytes], None]
    writable: bool = True
    listable: bool = True
    page_size: int | None = None
    large_upload: int = 3 << 20

    def url(self, key: str) -> str:
        """The URL of ``key`` under this case's prefix."""
        return join(self.base, key)
