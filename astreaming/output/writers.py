"""The public writers: the format writers plus remote output (``out="gs://..."`` or ``(local, remote)``).

``astreaming.format`` writes files to a local directory and never imports the storage layer; the classes
here add what remote output needs on top of it, through the format writer's two hooks
(``_open_output`` and ``uploader``):

- ``out`` = remote URL: files are staged in a ``mkdtemp()`` directory, deleted at the end unless
  ``keep_local``; ``out = (local, remote)``: files are written to ``local``;
- each finished file is uploaded at once, concurrently (:class:`~astreaming.output.uploader.RemoteUploader`),
  and deleted locally after its upload unless ``keep_local``;
- ``index.json`` is uploaded last, only after every other upload succeeded; an upload failure raises
  the typed :class:`~astreaming.errors.StorageError` at the next ``write()`` or at ``finish()``, and a
  ``with`` body that raises publishes no index, locally or remotely;
- ``exist_ok=False`` refuses a non-empty remote directory as well as a non-empty local one;
- ``backend=`` (an :class:`~astreaming.storage.Backend` instance, as httpx takes a ``transport``) serves
  the remote side instead of the backend the URL's scheme selects; the writer owns it from then on.

A plain local ``out`` behaves exactly like the format writers.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from astreaming.errors import ConfigError
from astreaming.format import jsonl, xsv
from astreaming.format.mds import writer as mds
from astreaming.format.writer import ShardWriter, check_local_out, is_remote_out, prepare_local_out
from astreaming.output.target import check_backend, is_local, parse_out
from astreaming.output.uploader import RemoteUploader
from astreaming.storage import Backend
from astreaming.storage.urls import local_path

__all__ = ["CSVWriter", "JSONWriter", "MDSWriter", "RemoteOutput", "TSVWriter", "XSVWriter"]

log = logging.getLogger(__name__)

# The local index of a writer that keeps no local copy: uploaded as index.json, never published locally.
# Named like write_text_atomic's temporary files, which a later exist_ok=True may delete.
_UPLOAD_INDEX = ".index.json.upload.tmp"


class RemoteOutput(ShardWriter):
    """Mixin that gives a format writer remote output; list it before the format writer class.

    Args:
        backend: Serves the remote side of ``out`` instead of the backend its scheme selects (keyword
            only; see :class:`MDSWriter`). The rest go to the format writer.

    Attributes:
        remote: The remote directory URL, or ``None`` for local-only output.
        local: The local directory written to (a temporary staging directory for a bare remote URL).
    """

    remote: str | None = None
    _staging = False
    _failure: BaseException | None = None
    _remote_uploader: RemoteUploader | None = None

    def __init__(self, *args: Any, backend: Backend | None = None, **kwargs: Any) -> None:
        # Set before the format writer's __init__, which calls _open_output.
        self._given_backend = check_backend(backend)
        super().__init__(*args, **kwargs)

    def _open_output(self, out: object) -> Path:
        if not is_remote_out(out):
            if self._given_backend is not None:
                raise ConfigError(
                    f"backend: given, but out={out!r} is local; it serves a remote URL or the remote "
                    "of a (local, remote) tuple"
                )
            return super()._open_output(out)
        target = parse_out(out)
        assert target.remote is not None
        self.remote = target.remote
        # The remote is checked before the local directory is touched: exist_ok=True empties the local
        # directory, which must not happen when the run is refused anyway. And the local directory is
        # checked (changing nothing) before the remote, whose index exist_ok=True deletes: a local
        # directory that will be refused (held by another writer, holding other files) must not cost the
        # remote its published index.
        if target.local is not None:
            check_local_out(target.local, exist_ok=self.exist_ok)
        if target.local is None:
            self._staging = True
            local = Path(tempfile.mkdtemp(prefix="astreaming-out-"))
        else:
            local = Path(target.local)
            if is_local(target.remote) and Path(local_path(target.remote)).resolve() == local.resolve():
                # Deleting each "uploaded" local file would delete the only copy.
                raise ConfigError(f"out: local and remote are the same directory ({local})")
        try:
            uploader = RemoteUploader(
                target.remote,
                local,
                keep_local=self.keep_local,
                max_workers=self.max_workers,
                retry=self.retry,
                progress_bar=self.progress_bar,
                backend=self._given_backend,
            )
        except BaseException:
            self._remove_staging(local)
            raise
        try:
            uploader.prepare(exist_ok=self.exist_ok)
            if target.local is not None:
                self._claim = prepare_local_out(local, exist_ok=self.exist_ok)
                local = self._claim.path
        except BaseException:
            uploader.abort()
            self._remove_staging(local)
            raise
        self.uploader = self._remote_uploader = uploader
        return local

    def write(self, sample: Mapping[str, Any]) -> None:
        """Add one sample (see the format writer).

        Raises:
            StorageError: An earlier upload failed; nothing more is uploaded and no index will be.
        """
        if self._remote_uploader is not None:
            self._remote_uploader.raise_if_failed()
        super().write(sample)

    def finish(self) -> None:
        """Flush the last shard, wait for every upload, then publish index.json remotely (and locally with
        ``keep_local``: every file stays there, so the local copy is a whole dataset even if the upload
        fails).

        Raises:
            StorageError: An upload failed (the URL is named); no index was uploaded and the local
                files that were not uploaded are kept.
        """
        if self._failure is not None:
            raise self._failure
        if self._closed:
            return
        try:
            super().finish()
        except BaseException as e:
            self._failure = e
            self._closed = True
            if self._remote_uploader is not None:
                self._remote_uploader.abort()  # no-op if finish() got as far as closing it
                with contextlib.suppress(OSError):
                    (self.local / _UPLOAD_INDEX).unlink()
                log.error("upload to %s failed; files not uploaded are kept in %s", self.remote, self.local)
            raise
        if self._remote_uploader is not None and not self.keep_local:
            self._remove_staging(self.local)
            if not self._staging:
                # Every file was deleted after its upload; drop the directory if nothing else is there.
                with contextlib.suppress(OSError):
                    self.local.rmdir()

    def local_index_name(self) -> str:
        """``index.json`` with ``keep_local`` (every file stays, so the local copy is a whole dataset),
        else a temporary name: the shards are deleted as they are uploaded, and a process killed while
        the uploads run must not leave an ``index.json`` beside some of them (see the format writer)."""
        return _UPLOAD_INDEX if self._remote_uploader is not None and not self.keep_local else "index.json"

    def abandon(self) -> None:
        """Stop without publishing an index anywhere; pending uploads are cancelled."""
        super().abandon()
        if not self.keep_local:
            self._remove_staging(getattr(self, "local", None))

    def _remove_staging(self, local: Path | None = None) -> None:
        if self._staging and local is not None:
            shutil.rmtree(local, ignore_errors=True)


class MDSWriter(RemoteOutput, mds.MDSWriter):
    """Write MDS shards to a local directory or remote storage (reference §7.1).

    Args:
        columns: column name -> MDS encoding (``"int"``, ``"str"``, ``"ndarray:float32"``, ...).
        out: a local directory, a remote URL (``gs://``, ``s3://``, ``oci://``, ``azure://``, a path) or a
            ``(local, remote)`` tuple.
        keep_local: keep the local files after their upload.
        compression, hashes, size_limit: see :class:`astreaming.format.writer.ShardWriter`.
        backend: An :class:`astreaming.storage.Backend` instance, not yet opened, that serves the remote
            side of ``out`` instead of the backend its URL scheme selects, the way httpx takes a
            ``transport``: for tests (a scripted backend), custom protocols and client options. The
            writer owns it: it opens it on astreaming's loop thread and closes it when it finishes or
            is abandoned, so give each writer its own. Refused (ConfigError) with a local-only ``out``.
        **kwargs: ``progress_bar``, ``max_workers`` (uploads in flight), ``retry`` (upload attempts) and
            ``exist_ok``, as in mosaic.

    Example:
        >>> with MDSWriter(out="s3://bucket/ds", columns={"x": "int"}) as w:  # doctest: +SKIP
        ...     w.write({"x": 1})
    """


class JSONWriter(RemoteOutput, jsonl.JSONWriter):
    """Write JSONL shards locally or remotely; arguments as :class:`MDSWriter` plus ``newline``."""


class XSVWriter(RemoteOutput, xsv.XSVWriter):
    """Write delimited-text shards locally or remotely; arguments as :class:`MDSWriter` plus
    ``separator`` and ``newline``."""


class CSVWriter(RemoteOutput, xsv.CSVWriter):
    """Write CSV shards locally or remotely; arguments as :class:`MDSWriter` plus ``newline``."""


class TSVWriter(RemoteOutput, xsv.TSVWriter):
    """Write TSV shards locally or remotely; arguments as :class:`MDSWriter` plus ``newline``."""
