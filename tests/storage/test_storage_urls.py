"""URL parsing, joining, redaction, and the scheme registry."""

from __future__ import annotations

import pytest

from astreaming.errors import ConfigError, UnknownOptionError
from astreaming.storage.gcs import GCSBackend
from astreaming.storage.http import HTTPBackend
from astreaming.storage.local import LocalBackend
from astreaming.storage.oci import OCIBackend
from astreaming.storage.registry import backend_class, backend_for, supported_schemes
from astreaming.storage.s3 import S3Backend
from astreaming.storage.urls import REDACTED, StorageURL, join, local_path, parse_url, redact, scheme_of


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/data/ds/index.json", StorageURL("", "", "/data/ds/index.json")),
        ("rel/ds", StorageURL("", "", "rel/ds")),
        ("file:///data/my%20ds/x", StorageURL("file", "", "/data/my ds/x")),
        ("gs://bucket/a/b.mds", StorageURL("gs", "bucket", "a/b.mds")),
        ("S3://bucket", StorageURL("s3", "bucket", "")),
        ("oci://bkt@ns/k/x", StorageURL("oci", "bkt@ns", "k/x")),
        (
            "azure://acct.blob.core.windows.net/c/b?sv=1&sig=s",
            StorageURL("azure", "acct.blob.core.windows.net", "c/b", "sv=1&sig=s"),
        ),
        ("https://h:8080/p/q?x=1#frag", StorageURL("https", "h:8080", "p/q", "x=1")),
    ],
)
def test_parse_url(url: str, expected: StorageURL) -> None:
    assert parse_url(url) == expected


def test_parse_errors() -> None:
    with pytest.raises(ConfigError):
        parse_url("")
    with pytest.raises(ConfigError, match="no bucket"):
        parse_url("gs:///key")
    with pytest.raises(ConfigError, match="host"):
        parse_url("file://otherhost/x")
    with pytest.raises(ConfigError):
        local_path("gs://b/k")
    assert scheme_of("C:/data") == "" and scheme_of("gs://b") == "gs"


def test_join() -> None:
    assert join("gs://b/data", "shard.0.mds") == "gs://b/data/shard.0.mds"
    assert join("gs://b/data/", "/sub", "x") == "gs://b/data/sub/x"
    assert join("/tmp/ds", "a", "b") == "/tmp/ds/a/b"
    assert join("https://h/c?sig=abc", "k") == "https://h/c/k?sig=abc"  # SAS token stays at the end
    assert join("s3://b", "") == "s3://b"


@pytest.mark.parametrize(
    ("url", "secrets", "kept"),
    [
        ("https://alice:pw123@host.example/p", ["alice", "pw123"], ["host.example/p"]),
        (
            "https://acct.blob.core.windows.net/c/b?sv=2022&se=2030&sp=r&sig=SECRETSIG%3D",
            ["SECRETSIG"],
            ["sv=2022", "sp=r", "/c/b"],
        ),
        (
            "https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAXYZ%2F2024&X-Amz-Signature=deadbeef",
            ["AKIAXYZ", "deadbeef", "AWS4"],
            ["/b/k"],
        ),
        (
            "https://storage.googleapis.com/b/o?X-Goog-Signature=feedface&alt=media",
            ["feedface"],
            ["alt=media"],
        ),
        ("http://h/x?token=t0k3n&access_token=a1", ["t0k3n", "a1"], ["http://h/x"]),
    ],
)
def test_redact_removes_credentials(url: str, secrets: list[str], kept: list[str]) -> None:
    shown = redact(url)
    assert REDACTED in shown
    for s in secrets:
        assert s not in shown
    for k in kept:
        assert k in shown


def test_redact_leaves_clean_urls_alone() -> None:
    for url in ("gs://b/k", "/local/path@x", "oci://bucket@namespace/key", "https://h/p?x=1"):
        assert redact(url) == url


def test_registry_maps_schemes() -> None:
    assert backend_class("/data") is LocalBackend
    assert backend_class("file:///data") is LocalBackend
    assert backend_class("gs://b") is GCSBackend
    assert backend_class("s3://b") is S3Backend
    assert backend_class("oci://b@n/k") is OCIBackend
    assert backend_class("http://h") is HTTPBackend and backend_class("https://h") is HTTPBackend
    assert {"", "file", "gs", "s3", "oci", "azure", "http", "https"} <= set(supported_schemes())


def test_registry_errors() -> None:
    with pytest.raises(UnknownOptionError, match="did you mean gs://"):
        backend_for("gcs://bucket/x")
    with pytest.raises(UnknownOptionError, match="ftp://"):
        backend_for("ftp://h/x")
    with pytest.raises(UnknownOptionError, match="endpoint_url"):
        backend_for("gs://b", endpoint_url="http://x")
    with pytest.raises(UnknownOptionError, match="bogus"):
        backend_for("oci://b@n/k", bogus=1)
    with pytest.raises(ConfigError, match="timeout"):
        backend_for("/tmp", timeout=0)
    b = backend_for("s3://b", timeout=5, endpoint_url="http://127.0.0.1:1", page_size=10)
    assert isinstance(b, S3Backend) and b.timeout == 5.0 and b.page_size == 10


class MemoryBackend(LocalBackend):
    """A stand-in third-party backend for the registration test."""

    scheme = ("mem",)


def test_register_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from astreaming.storage import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(UnknownOptionError):
        backend_for("mem://x")
    registry.register_backend("mem", MemoryBackend)
    assert isinstance(backend_for("mem://x"), MemoryBackend)
    registry.register_backend("mem2", "astreaming.storage.urls:StorageURL")  # not a Backend
    with pytest.raises(ConfigError, match="not a Backend"):
        backend_for("mem2://x")
