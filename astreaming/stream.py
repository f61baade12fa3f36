"""``Stream``: one data source of a ``StreamingDataset`` — where it is, and how much of it an epoch takes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from astreaming.errors import ConfigError
from astreaming.order.weights import StreamWeights
from astreaming.storage.urls import join, redact

if TYPE_CHECKING:
    from astreaming.storage.base import Backend

#: Makes the (not yet opened) backend of a stream: called as ``factory(remote_root, timeout=seconds)``.
BackendFactory = Callable[..., "Backend"]

__all__ = ["DownloadOptions", "Stream", "default_local"]


@dataclass(frozen=True)
class DownloadOptions:
    """The per-stream download knobs after dataset defaults were applied."""

    download_retry: int
    download_timeout: float
    validate_hash: str | None
    keep_zip: bool


def _is_remote(remote: str | None, local: str | None) -> bool:
    """Whether a stream has a source other than its local directory (mosaic's ``safe_keep_zip`` rule)."""
    if remote is None:
        return False
    if local is None:
        return True
    return os.path.abspath(os.path.expanduser(remote)) != os.path.abspath(os.path.expanduser(local))


def default_local(remote: str) -> str:
    """The cache directory used when ``local`` is not given: stable per remote, reused across runs.

    mosaicml-streaming derives the same ``<tmp>/<blake2s(remote)>`` path but refuses to start when it
    already exists (so every second run failed); astreaming treats it as the cache it is. A URL's query
    string (a SAS token, a presigned signature) is credentials, not location: a rotated token keeps the
    same cache instead of downloading the dataset again into a new directory.
    """
    if "://" in remote:
        remote = remote.partition("?")[0]
    digest = hashlib.blake2s(remote.encode("utf-8"), digest_size=16).hexdigest()
    return os.path.join(tempfile.gettempdir(), digest)


class Stream:
    """One dataset directory (remote URL and/or local path) and its weighting in the mix.

    Args:
        remote: Where the dataset lives: a path or a ``gs://``, ``s3://``, ``oci://``, ``azure://``,
            ``http(s)://`` or ``file://`` URL. ``None``: ``local`` is the dataset itself.
        local: Cache directory for ``remote`` (or the dataset when there is no remote).
        split: Sub-directory appended to both ``remote`` and ``local``.
        proportion: Relative weight of this stream (normalised over all streams).
        repeat: Multiplier on this stream's sample count per epoch.
        choose: Absolute number of samples per epoch from this stream.
        download_retry: Retries of a failed download after the first attempt (dataset default if None).
        download_timeout: Seconds allowed for each download attempt (dataset default if None).
        validate_hash: Hash algorithm to verify downloaded shards with (dataset default if None).
        keep_zip: Keep compressed shards after decompressing them (dataset default if None).
        backend: Serves ``remote`` instead of the backend its scheme selects, as httpx takes a
            ``transport``: called as ``backend(remote_root, timeout=seconds)`` for a new, not yet opened
            :class:`~astreaming.storage.Backend`. Every process that reads the stream (DataLoader
            workers, ranks) calls it again, so for ``spawn`` it must pickle: a module-level function,
            or a ``functools.partial`` of one with its options. For tests, custom protocols and
            client options.

    Raises:
        ConfigError: naming the argument, for invalid values or combinations.
    """

    def __init__(
        self,
        *,
        remote: str | None = None,
        local: str | None = None,
        split: str | None = None,
        proportion: float | None = None,
        repeat: float | None = None,
        choose: int | None = None,
        download_retry: int | None = None,
        download_timeout: float | None = None,
        validate_hash: str | None = None,
        keep_zip: bool | None = None,
        backend: BackendFactory | None = None,
    ) -> None:
        if remote is None and local is None:
            raise ConfigError("Stream: at least one of `remote` and `local` must be given")
        if download_retry is not None and download_retry < 0:
            raise ConfigError(f"Stream: `download_retry` must be >= 0, got {download_retry}")
        if download_timeout is not None and download_timeout <= 0:
            raise ConfigError(f"Stream: `download_timeout` must be > 0, got {download_timeout}")
        if backend is not None and not callable(backend):
            raise ConfigError(f"Stream: `backend` must be a Backend class or factory, got {backend!r}")
        if choose is not None and int(choose) != choose:
            raise ConfigError(f"Stream: `choose` must be an integer, got {choose}")
        self.weights = StreamWeights(
            proportion=proportion, repeat=repeat, choose=None if choose is None else int(choose)
        )
        self.remote = remote
        self.split = split
        self.local = local if local is not None else default_local(str(remote))
        self._given_local = local
        self.proportion = proportion
        self.repeat = repeat
        self.choose = choose
        self.download_retry = download_retry
        self.download_timeout = download_timeout
        self.validate_hash = validate_hash
        self.keep_zip = keep_zip
        self.backend = backend

    @property
    def has_remote(self) -> bool:
        """Whether the stream's shards can be fetched again (only then may the cache evict them)."""
        return _is_remote(self.remote, self._given_local)

    @property
    def remote_root(self) -> str | None:
        """``remote/split`` (None without a remote)."""
        if not self.has_remote or self.remote is None:
            return None
        return _join(self.remote, self.split)

    @property
    def local_root(self) -> str:
        """``local/split``: where this stream's shards live on this node."""
        return os.path.join(self.local, self.split) if self.split else self.local

    def open_backend(self, timeout: float) -> Backend:
        """A new, not yet opened backend for :attr:`remote_root` (``async with`` it on the loop using it).

        Raises:
            ConfigError: the stream has no remote, or ``backend`` did not return a Backend.
        """
        from astreaming.storage.base import Backend
        from astreaming.storage.registry import backend_for

        root = self.remote_root
        if root is None:
            raise ConfigError(f"{self!r} has no remote to open a backend for")
        if self.backend is None:
            return backend_for(root, timeout=timeout)
        made = self.backend(root, timeout=timeout)
        if not isinstance(made, Backend):
            raise ConfigError(f"Stream(backend={self.backend!r}) returned {made!r}, not a Backend")
        return made

    def download_options(
        self, *, download_retry: int, download_timeout: float, validate_hash: str | None, keep_zip: bool
    ) -> DownloadOptions:
        """This stream's knobs, falling back to the dataset's for those it leaves unset."""
        return DownloadOptions(
            download_retry=self.download_retry if self.download_retry is not None else download_retry,
            download_timeout=(
                self.download_timeout if self.download_timeout is not None else download_timeout
            ),
            validate_hash=self.validate_hash if self.validate_hash is not None else validate_hash,
            # Without a remote the compressed files are the source of truth: never delete them.
            keep_zip=(self.keep_zip if self.keep_zip is not None else keep_zip) or not self.has_remote,
        )

    def __repr__(self) -> str:
        args: dict[str, Any] = {
            "remote": None if self.remote is None else redact(self.remote),  # SAS / presigned tokens
            "local": self._given_local,
            "split": self.split,
            "proportion": self.proportion,
            "repeat": self.repeat,
            "choose": self.choose,
        }
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
        return f"Stream({shown})"


def _join(root: str, split: str | None) -> str:
    if not split:
        return root
    return join(root, split)  # a SAS / presigned query stays at the end
