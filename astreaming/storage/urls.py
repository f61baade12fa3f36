"""URL parsing, joining and redaction for storage URLs.

Supported forms (reference §6, plus ``file://`` and ``http(s)://``, which astreaming adds):

- local paths: ``/data/ds``, ``data/ds`` (scheme ``""``) and ``file:///data/ds`` (scheme ``"file"``);
- ``gs://bucket/key``, ``s3://bucket/key``;
- ``oci://bucket@namespace/key`` (the ``@`` is part of the bucket, not userinfo);
- ``azure://account.blob.core.windows.net/container/blob``;
- ``http://host[:port]/path[?query]`` and ``https://...``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from astreaming.errors import ConfigError

#: Placeholder that replaces secrets in URLs shown in messages and logs.
REDACTED = "REDACTED"

# Query parameters that carry secrets: Azure SAS signatures, AWS/GCS signed-URL fields, generic tokens.
_SECRET_PARAMS = frozenset(
    {"sig", "signature", "token", "access_token", "api_key", "apikey", "key", "password", "secret"}
    | {"credential", "x-api-key"}
)
_SECRET_PREFIXES = ("x-amz-", "x-goog-", "x-oss-")
# Schemes whose netloc may contain '@' legitimately (bucket@namespace), never userinfo.
_AT_IN_BUCKET = frozenset({"oci"})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StorageURL:
    """A storage URL split into its parts.

    Attributes:
        scheme: Lower-case scheme, ``""`` for a plain local path.
        bucket: Bucket/container authority (``bucket`` for gs/s3, ``bucket@namespace`` for oci, the
            host for azure/http); ``""`` for local paths.
        key: The object key without a leading slash (local: the filesystem path as given).
        query: The raw query string (http/azure SAS), ``""`` if none.
    """

    scheme: str
    bucket: str
    key: str
    query: str = ""


def scheme_of(url: str) -> str:
    """The lower-case scheme of ``url``, or ``""`` for a local path (``C:/x`` is not a scheme)."""
    m = _SCHEME_RE.match(url)
    return m.group(1).lower() if m else ""


def parse_url(url: str) -> StorageURL:
    """Split ``url`` into scheme, bucket, key and query.

    Raises:
        ConfigError: A cloud URL without a bucket (``gs:///key``) or an empty URL.
    """
    if not url:
        raise ConfigError("storage URL is empty")
    scheme = scheme_of(url)
    if scheme == "":
        return StorageURL("", "", url)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL {url!r} names host {parts.netloc!r}; only local files are supported")
        return StorageURL("file", "", unquote(parts.path))
    rest = url[len(scheme) + 3 :]
    query = ""
    if scheme in ("http", "https", "azure"):
        rest = rest.partition("#")[0]
        rest, _, query = rest.partition("?")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ConfigError(f"storage URL {redact(url)!r} has no bucket/host after {scheme}://")
    return StorageURL(scheme, bucket, key, query)


def local_path(url: str) -> str:
    """The filesystem path of a local path or ``file://`` URL."""
    parsed = parse_url(url)
    if parsed.scheme not in ("", "file"):
        raise ConfigError(f"{redact(url)!r} is not a local path")
    return parsed.key


def join(base: str, *parts: str) -> str:
    """Join key components onto a URL or local path with ``/`` (no normalisation of ``..``).

    ``join("gs://b/data", "shard.0.mds") == "gs://b/data/shard.0.mds"``; a query string on an
    http/azure base (a SAS token) is kept at the end.
    """
    scheme = scheme_of(base)
    query = ""
    if scheme in ("http", "https", "azure"):
        base, _, query = base.partition("?")
    out = base
    for part in parts:
        part = part.lstrip("/") if scheme else part
        if not part:
            continue
        out = posixpath.join(out, part) if scheme == "" else (out.rstrip("/") + "/" + part)
    return f"{out}?{query}" if query else out


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    out = []
    for k, v in pairs:
        lk = k.lower()
        if lk in _SECRET_PARAMS or lk.startswith(_SECRET_PREFIXES):
            v = REDACTED
        out.append((k, v))
    return urlencode(out, safe="/:,", quote_via=quote)


def redact(url: str) -> str:
    """``url`` with credentials replaced by ``REDACTED``, for messages and logs.

    Redacts userinfo (``https://user:pw@host``), SAS signatures (``sig=``), signed-URL query fields
    (``X-Amz-*``, ``X-Goog-*``) and common token parameters. Local paths are returned unchanged.
    """
    scheme = scheme_of(url)
    if scheme in ("", "file"):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{scheme}://{REDACTED}"
    netloc = parts.netloc
    if "@" in netloc and scheme not in _AT_IN_BUCKET:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = _redact_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


__all__ = ["REDACTED", "StorageURL", "join", "local_path", "parse_url", "redact", "scheme_of"]
