"""merge_index with remote partitions and remote output (reference §7.2).

The merge itself is :func:`astreaming.format.merge.merge_index` (local, strict, byte-compatible with
mosaic). This module adds the storage side: partition indexes named by URL are downloaded, the
single-argument form lists a remote ``out_root``, and the merged index is uploaded when ``out`` is
remote. Each partition index is fetched into a private temporary directory at the partition's path
relative to ``out`` (``<tmp>/3/index.json``), merged there, and the result is published.

Purely local calls go straight to the format implementation.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astreaming.errors import ConfigError, FormatError, ObjectNotFound
from astreaming.fetch.loop_thread import get_loop_thread
from astreaming.format.index import parse_index, write_text_atomic
from astreaming.format.merge import merge_index as merge_local
from astreaming.format.paths import check_basename
from astreaming.output.target import OutputTarget, check_backend, is_local, parse_out
from astreaming.storage import Backend, RetryPolicy, backend_class, backend_for, join, redact, with_retries
from astreaming.storage.urls import local_path

__all__ = ["merge_index"]

INDEX = "index.json"
_OPTIONS = ("keep_local", "download_timeout")


@dataclass(frozen=True)
class _Partition:
    """One partition index: where to read it and its directory relative to ``out``."""

    source: str  # local path or URL of the index.json to read
    prefix: str  # partition directory relative to out ("3", "a/b")


def merge_index(*args: Any, backend: Backend | None = None, **kwargs: Any) -> None:
    """Merge partition indexes into ``out/index.json``, locally and/or remotely.

    Two call forms, as in mosaic:

    - ``merge_index(index_file_urls, out, keep_local=True, download_timeout=60)``: partition
      ``index.json`` locations (local paths, URLs, or ``(local, remote)`` tuples, whose local copy is
      used when it exists), merged in the given order. Every partition must lie inside ``out`` (a local
      directory, a URL or a ``(local, remote)`` tuple); its basenames are prefixed with its path
      relative to ``out``.
    - ``merge_index(out_root, keep_local=True, download_timeout=60)``: every ``index.json`` below
      ``out_root`` (its own excepted), in sorted order; a remote ``out_root`` is listed.

    Args:
        keep_local: With ``out=(local, remote)``, also write the merged index to ``local``. A bare
            remote ``out`` leaves nothing behind locally.
        download_timeout: Seconds per attempt when downloading a partition index or uploading the
            merged one (each is tried up to three times).
        backend: An :class:`astreaming.storage.Backend` instance, not yet opened, that serves the remote
            side instead of the backends the URL schemes select, as httpx takes a ``transport``:
            ``out``'s remote and every partition given by URL (local paths and ``file://`` partitions
            are still read from disk). The call owns it: it is opened on astreaming's loop thread and
            closed before ``merge_index`` returns, so give each call its own.

    Raises:
        ConfigError: Bad arguments, no partitions, a partition outside ``out``, or a ``backend`` given
            when nothing is remote.
        FormatError: A partition index is missing or invalid (naming its path or URL).
        StorageError: A download or the upload failed (naming the URL).
    """
    items, out, keep_local, timeout = _parse_args(args, kwargs)
    target = parse_out(out, name="out_root" if items is None else "out")
    partitions = None if items is None else [_split_item(item) for item in items]
    remote_parts = partitions is not None and any(not is_local(src) for src, _ in partitions)
    given = check_backend(backend)
    if target.remote is None and not remote_parts:
        if given is not None:
            raise ConfigError("merge_index: backend given, but out and every partition are local")
        # Nothing remote: the format implementation does it all (same messages, same bytes).
        merge_local(*args, **kwargs)
        return
    policy = RetryPolicy.from_download_retry(download_retry=2, download_timeout=timeout)
    backends = _Backends(policy, given, target.remote)
    get_loop_thread().call(_merge(partitions, target, backends, keep_local=keep_local))


def _parse_args(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[Any] | None, object, bool, float]:
    """``(index_file_urls or None for the root form, out, keep_local, download_timeout)``."""
    kwargs = dict(kwargs)
    rest: Sequence[Any]
    items: list[Any] | None
    if args and isinstance(args[0], list):
        items, rest = list(args[0]), args[1:]
        if rest:
            out, rest = rest[0], rest[1:]
        elif "out" in kwargs:
            out = kwargs.pop("out")
        else:
            raise ConfigError("merge_index: missing argument 'out'")
    elif "index_file_urls" in kwargs:
        if args:
            raise ConfigError("merge_index: index_file_urls given twice")
        items, rest = list(kwargs.pop("index_file_urls")), ()
        if "out" not in kwargs:
            raise ConfigError("merge_index: missing argument 'out'")
        out = kwargs.pop("out")
    elif args:
        items, out, rest = None, args[0], args[1:]
    elif "out_root" in kwargs:
        items, out, rest = None, kwargs.pop("out_root"), ()
    else:
        raise ConfigError("merge_index: expected index_file_urls and out, or out_root")
    if len(rest) > len(_OPTIONS):
        raise ConfigError(f"merge_index: too many positional arguments {list(rest)!r}")
    options: dict[str, Any] = {"keep_local": True, "download_timeout": 60.0}
    for name, value in zip(_OPTIONS, rest, strict=False):
        options[name] = value
    for key, value in kwargs.items():
        if key not in _OPTIONS:
            raise ConfigError(f"merge_index: unknown argument {key!r}")
        options[key] = value
    timeout = options["download_timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(f"download_timeout must be > 0 seconds, got {timeout!r}")
    return items, out, bool(options["keep_local"]), float(timeout)


def _split_item(item: object) -> tuple[str, str | None]:
    """``(where to read the index, the other name of the same partition or None)``."""
    if isinstance(item, tuple):
        if len(item) != 2 or not all(isinstance(v, (str, os.PathLike)) for v in item):
            raise ConfigError(f"index_file_urls: expected (local, remote) pairs, got {item!r}")
        local, remote = _index_url(os.fspath(item[0])), _index_url(os.fspath(item[1]))
        # mosaic reads the local copy when there is one, else downloads the remote one.
        if os.path.exists(local_path(local)) if is_local(local) else False:
            return local, remote
        return remote, local
    if not isinstance(item, (str, os.PathLike)):
        raise ConfigError(f"index_file_urls: expected paths or URLs, got {item!r}")
    return _index_url(os.fspath(item)), None


def _index_url(location: str) -> str:
    """The index.json of a partition named by its index or its directory."""
    location = location.rstrip("/") or location
    if location.rsplit("/", 1)[-1] == INDEX:
        return location
    if is_local(location) and os.path.isfile(local_path(location)):
        return location
    return join(location, INDEX)


def _relative(index_url: str, base: str | None) -> str | None:
    """The partition directory of ``index_url`` relative to directory ``base``, if inside it."""
    if base is None or is_local(index_url) != is_local(base):
        return None
    if is_local(index_url):
        part_dir = Path(local_path(index_url)).parent.resolve()
        try:
            rel = part_dir.relative_to(Path(local_path(base)).resolve()).as_posix()
        except ValueError:
            return None
        return None if rel == "." else rel
    url_dir = index_url.rsplit("/", 1)[0]
    root = base.rstrip("/") + "/"
    return url_dir[len(root) :] if url_dir.startswith(root) and len(url_dir) > len(root) else None


def _prefix(names: Sequence[str | None], target: OutputTarget) -> str:
    for name in names:
        if name is None:
            continue
        for base in (target.remote, target.local):
            rel = _relative(name, base)
            if rel is not None:
                # The prefix becomes a directory of our temporary tree and part of every basename.
                return check_basename(rel, source=redact(name))
    shown = " / ".join(redact(n) for n in names if n is not None)
    outs = " / ".join(redact(b) for b in (target.local, target.remote) if b is not None)
    raise ConfigError(f"index_file_urls: partition {shown} is not inside out={outs}")


async def _merge(
    items: list[tuple[str, str | None]] | None, target: OutputTarget, backends: _Backends, *, keep_local: bool
) -> None:
    remote = target.remote
    async with backends:
        if items is None:
            items = await _list_partitions(backends, target)
        partitions = [_Partition(src, _prefix((src, other), target)) for src, other in items]
        if not partitions:
            raise ConfigError("index_file_urls: no partition index given")
        with tempfile.TemporaryDirectory(prefix="astreaming-merge-") as tmp:
            root = Path(tmp)
            paths = []
            for part in partitions:
                data = await backends.read(part.source)
                parse_index(data, source=redact(part.source))  # fail naming the URL, not our temp file
                dest = root.joinpath(*part.prefix.split("/"), INDEX)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                paths.append(str(dest))
            merge_local(paths, str(root))
            merged = root / INDEX
            # Remote first: when its upload fails no local index may claim a merge that did not happen
            # (its partitions may exist only remotely). The local write is the one that rarely fails.
            if remote is not None:
                await backends.upload(merged, join(remote.rstrip("/") or remote, INDEX))
            if target.local is not None and (keep_local or remote is None):
                Path(target.local).mkdir(parents=True, exist_ok=True)
                write_text_atomic(Path(target.local) / INDEX, merged.read_text())


async def _list_partitions(backends: _Backends, target: OutputTarget) -> list[tuple[str, str | None]]:
    """The partition indexes below a remote ``out_root`` (with their local twins for a tuple)."""
    assert target.remote is not None
    root = target.remote.rstrip("/") or target.remote
    own = join(root, INDEX)
    found = []
    async for info in backends.get(root).list(root + "/"):
        url = info.url
        if url == own or url.rsplit("/", 1)[-1] != INDEX or not url.startswith(root + "/"):
            continue
        rel = url[len(root) + 1 :]
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # hidden directories (.tmp, .git), as the local form skips them
        local = None
        if target.local is not None:
            local = str(Path(target.local).joinpath(*rel.split("/")))
        found.append((url, local))
    found.sort()
    if not found:
        raise ConfigError(f"out_root: no partition index.json found below {redact(root)}")
    # Prefer a local twin that exists, as for explicit (local, remote) pairs.
    return [(loc, url) if loc is not None and os.path.isfile(loc) else (url, loc) for url, loc in found]


class _Backends:
    """One opened backend per scheme, closed together; reads and uploads with retries.

    An injected backend (``given``) serves ``remote`` and every URL that is not local; it is closed
    with the others, whether or not it was used.
    """

    def __init__(self, policy: RetryPolicy, given: Backend | None = None, remote: str | None = None) -> None:
        self.policy = policy
        self._given = given
        self._remote = None if remote is None else (remote.rstrip("/") or remote)
        self._open: dict[type[Backend], Backend] = {}

    def get(self, url: str) -> Backend:
        """The backend serving ``url`` (one per backend class; each serves every bucket of its scheme)."""
        if self._given is not None and (not is_local(url) or self._under_remote(url)):
            return self._given
        cls = backend_class(url)
        if cls not in self._open:
            self._open[cls] = backend_for(url, timeout=self.policy.timeout or 60.0)
        return self._open[cls]

    def _under_remote(self, url: str) -> bool:
        root = self._remote
        return root is not None and (url == root or url.startswith(root + "/"))

    async def __aenter__(self) -> _Backends:
        if self._given is not None:
            await self._given.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        owned = [*self._open.values(), *([self._given] if self._given is not None else [])]
        for backend in owned:
            await backend.aclose()

    async def read(self, url: str) -> bytes:
        backend = self.get(url)
        try:
            return await with_retries(self.policy, lambda: backend.read_bytes(url), url=url, what="download")
        except ObjectNotFound:
            raise FormatError(f"{redact(url)}: partition index not found") from None

    async def upload(self, src: Path, url: str) -> None:
        backend = self.get(url)
        await with_retries(self.policy, lambda: backend.upload(src, url), url=url, what="upload")
