"""Remote destinations for the writer/merge tests: local dir, file://, fake-gcs-server, moto S3.

Objects are read back OUT OF BAND (the filesystem, fake-gcs-server's JSON API over urllib, a botocore
client), never through the astreaming backend under test.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from output_fakes import Script

from astreaming.storage import Backend
from astreaming.testing.servers import FakeGCSServer, MotoS3Server

GCS_BUCKET = "astreaming-output-gcs"
S3_BUCKET = "astreaming-output-s3"


@dataclass
class Remote:
    """A remote directory owned by one test.

    Attributes:
        name: local, file, scripted (a non-local URL scheme over a local directory), gs or s3.
        url: The directory URL (no trailing slash) to pass as ``out``.
        listing: Sorted object keys below ``url`` (relative, ``/``-separated).
        get: The bytes of one object (relative key).
        put: Store an object (relative key), out of band.
        backend: What to pass as ``backend=``: a new injected backend for ``scripted``, else None (the
            backend the URL's scheme selects).
    """

    name: str
    url: str
    listing: Callable[[], list[str]]
    get: Callable[[str], bytes]
    put: Callable[[str, bytes], None]
    backend: Callable[[], Backend | None] = lambda: None

    def download(self, dest: Path) -> Path:
        """Copy every object below ``url`` into ``dest``; return ``dest``."""
        for key in self.listing():
            path = dest.joinpath(*key.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.get(key))
        return dest


def _local_remote(name: str, root: Path) -> Remote:
    def keys() -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    url = {"local": str(root), "file": f"file://{root}", "scripted": f"scripted://{root}"}[name]
    backend: Callable[[], Backend | None] = Script().backend if name == "scripted" else lambda: None
    return Remote(name, url, keys, lambda key: (root / key).read_bytes(), put, backend)


def _gcs_remote(server: FakeGCSServer, prefix: str) -> Remote:
    api = f"{server.url}/storage/v1/b/{GCS_BUCKET}/o"

    def keys() -> list[str]:
        out, token = [], None
        while True:
            query = {"prefix": f"{prefix}/"} | ({"pageToken": token} if token else {})
            with urllib.request.urlopen(f"{api}?{urllib.parse.urlencode(query)}", timeout=30) as resp:
                page = json.loads(resp.read())
            out += [item["name"][len(prefix) + 1 :] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(out)

    def get(key: str) -> bytes:
        name = urllib.parse.quote(f"{prefix}/{key}", safe="")
        with urllib.request.urlopen(f"{api}/{name}?alt=media", timeout=30) as resp:
            data: bytes = resp.read()
            return data

    def put(key: str, data: bytes) -> None:
        server.put_object(GCS_BUCKET, f"{prefix}/{key}", data)

    return Remote("gs", f"gs://{GCS_BUCKET}/{prefix}", keys, get, put)


def _s3_remote(client: object, prefix: str) -> Remote:
    def keys() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=f"{prefix}/")  # type: ignore[attr-defined]
        return sorted(obj["Key"][len(prefix) + 1 :] for page in pages for obj in page.get("Contents", []))

    def get(key: str) -> bytes:
        data: bytes = client.get_object(Bucket=S3_BUCKET, Key=f"{prefix}/{key}")["Body"].read()  # type: ignore[attr-defined]
        return data

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/{key}", Body=data)  # type: ignore[attr-defined]

    return Remote("s3", f"s3://{S3_BUCKET}/{prefix}", keys, get, put)


def make_remote(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Remote ``name``; for gs/s3 the emulator endpoint is exported the way users configure it (env)."""
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    prefix = f"out-{uuid.uuid4().hex[:10]}"
    if name in ("local", "file", "scripted"):
        return _local_remote(name, tmp_path / "remote" / prefix)
    if name == "gs":
        gcs: FakeGCSServer = request.getfixturevalue("gcs_server")
        monkeypatch.delenv("GCS_KEY", raising=False)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        return _gcs_remote(gcs, prefix)
    if name == "s3":
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        request.getfixturevalue("aws_env")
        monkeypatch.setenv("S3_ENDPOINT_URL", s3.url)
        client = s3.client()
        request.addfinalizer(client.close)
        return _s3_remote(client, prefix)
    raise ValueError(name)
