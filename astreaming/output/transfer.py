"""Upload a file or a directory to any remote, and download one object, for conversion scripts.

The same async backends and retry policy as the datasets and writers use. Each helper has an async form
(``await upload_async(...)`` on the caller's loop) and a blocking one that runs on the process's
astreaming loop thread, usable from plain scripts and from inside a running loop's thread alike.

Local destinations are written through a ``.part`` file and a rename, so an interrupted download never
leaves a partial file under the final name.

Each helper takes ``backend=``: an :class:`~astreaming.storage.Backend` instance, not yet opened, used
instead of the backend the URL's scheme selects (as httpx takes a ``transport``). The call owns it: it
opens it on the loop the call runs on and closes it before returning, so give each call its own.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from astreaming.errors import ConfigError, ObjectNotFound
from astreaming.fetch.loop_thread import get_loop_thread
from astreaming.output.target import check_backend, remote_backend
from astreaming.storage import Backend, RetryPolicy, join, redact, with_retries

__all__ = [
    "download_file",
    "download_file_async",
    "list_objects",
    "list_objects_async",
    "upload",
    "upload_async",
]


P = ParamSpec("P")
T = TypeVar("T")


def _blocking(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The blocking form of the async helper ``fn``: same arguments, run on the process's loop thread."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return get_loop_thread().call(fn(*args, **kwargs))

    call.__name__ = call.__qualname__ = fn.__name__.removesuffix("_async")
    call.__doc__ = f"Blocking :func:`{fn.__name__}` (runs on the process's astreaming loop thread)."
    return call


def _policy(retry: int, timeout: float | None) -> RetryPolicy:
    return RetryPolicy.from_download_retry(retry, timeout)


def _backend(url: str, timeout: float, backend: Backend | None) -> Backend:
    return remote_backend(url, timeout=timeout, backend=check_backend(backend))


def _files_under(root: Path) -> list[Path]:
    """Every regular file below ``root`` (sorted: uploads happen in a reproducible order)."""
    return sorted(p for p in root.rglob("*") if p.is_file())


async def upload_async(
    src: str | os.PathLike[str],
    url: str,
    *,
    timeout: float = 60.0,
    retry: int = 2,
    backend: Backend | None = None,
) -> list[str]:
    """Upload a file to the object ``url``, or a directory's files below the prefix ``url``.

    Args:
        src: A local file, or a directory (uploaded recursively, relative paths kept).
        url: Destination: ``gs://``, ``s3://``, ``oci://``, ``azure://`` URL, ``file://`` URL or a local path.
        timeout: Socket timeout of the storage client.
        retry: Retries of a failed upload after the first attempt.
        backend: Serves ``url`` instead of the backend its scheme selects (see the module docstring).

    Returns:
        The URLs written (credentials redacted).

    Raises:
        ObjectNotFound: ``src`` does not exist.
        ConfigError: an unsupported URL scheme, a negative ``retry``, or ``backend`` not a Backend.
        StorageError: an upload failed after its retries.
    """
    source = Path(src)
    if source.is_dir():
        pairs = [(p, join(url, p.relative_to(source).as_posix())) for p in _files_under(source)]
    elif source.is_file():
        pairs = [(source, url)]
    else:
        raise ObjectNotFound(f"upload: {source} does not exist", url=str(source))
    # Uploads are bounded by the client's socket timeouts, not a whole-attempt deadline (large files).
    policy = _policy(retry, None)
    async with _backend(url, timeout, backend) as opened:

        async def one(path: Path, dest: str) -> None:
            await with_retries(policy, lambda: opened.upload(path, dest), url=dest, what="upload")

        for path, dest in pairs:
            await one(path, dest)
    return [redact(dest) for _, dest in pairs]


async def download_file_async(
    remote: str,
    local: str | os.PathLike[str],
    timeout: float = 60.0,
    *,
    retry: int = 2,
    backend: Backend | None = None,
) -> Path:
    """Download the object ``remote`` to the file ``local`` (parents created; replaced atomically).

    Args:
        remote: The object URL (any supported scheme) or a local path.
        local: The destination file.
        timeout: Seconds each attempt may take.
        retry: Retries of a failed download after the first attempt.
        backend: Serves ``remote`` instead of the backend its scheme selects (see the module docstring).

    Returns:
        ``local`` as a :class:`~pathlib.Path`.

    Raises:
        ObjectNotFound: no such object (also a ``FileNotFoundError``, as mosaic raised).
        ConfigError: an unsupported URL scheme, ``local`` names a directory, or ``backend`` is not a
            Backend.
        StorageError: the download failed after its retries.
    """
    dest = Path(local)
    if dest.is_dir():
        raise ConfigError(f"download_file: local={str(dest)!r} is a directory; give the file to write")
    dest.parent.mkdir(parents=True, exist_ok=True)
    policy = _policy(retry, timeout)
    async with _backend(remote, timeout, backend) as opened:
        await with_retries(policy, lambda: opened.download(remote, dest), url=remote, what="download")
    return dest


async def list_objects_async(
    url_prefix: str, *, timeout: float = 60.0, backend: Backend | None = None
) -> list[str]:
    """The URLs of every object whose URL starts with ``url_prefix`` (a plain string prefix), sorted.

    Args:
        url_prefix: The prefix (any supported scheme, or a local path).
        timeout: Socket timeout of the storage client.
        backend: Serves ``url_prefix`` instead of the backend its scheme selects (see the module
            docstring).

    Raises:
        ConfigError: an unsupported URL scheme, or ``backend`` is not a Backend.
        StorageError: the listing failed.
    """
    async with _backend(url_prefix, timeout, backend) as opened:
        return sorted([info.url async for info in opened.list(url_prefix)])


#: Blocking :func:`upload_async`.
upload = _blocking(upload_async)
#: Blocking :func:`download_file_async` (mosaic's ``download_file(remote, local, timeout)``).
download_file = _blocking(download_file_async)
#: Blocking :func:`list_objects_async`.
list_objects = _blocking(list_objects_async)
