"""The ``out`` argument of the writers and ``merge_index`` (local, remote, or both: reference §7.1), and the
backend that serves its remote side (``backend=``, injected the way httpx takes a ``transport``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from astreaming.errors import ConfigError
from astreaming.storage import Backend, backend_for
from astreaming.storage.urls import local_path, redact, scheme_of

__all__ = ["OutputTarget", "check_backend", "is_local", "parse_out", "remote_backend"]


def is_local(url: str) -> bool:
    """Whether ``url`` is a local path or a ``file://`` URL."""
    return scheme_of(url) in ("", "file")


@dataclass(frozen=True)
class OutputTarget:
    """Where output goes.

    Attributes:
        local: Local directory (a filesystem path), or ``None`` when only a remote was given (the
            caller then stages in a temporary directory).
        remote: Remote directory URL, or ``None`` for local-only output. May itself be a local path or
            ``file://`` URL when given as the second element of a tuple (a copy to another directory).
    """

    local: str | None
    remote: str | None


def parse_out(out: object, *, name: str = "out") -> OutputTarget:
    """Split ``out`` (a local dir, a remote URL or a ``(local, remote)`` tuple).

    Raises:
        ConfigError: ``out`` is of the wrong type, or the tuple's first element is not local.
    """
    if isinstance(out, tuple):
        if len(out) != 2 or not all(isinstance(v, (str, os.PathLike)) for v in out):
            raise ConfigError(f"{name}: expected (local, remote) with two paths/URLs, got {out!r}")
        local, remote = os.fspath(out[0]), os.fspath(out[1])
        if not is_local(local):
            raise ConfigError(
                f"{name}: the first element of (local, remote) must be local, got {redact(local)!r}"
            )
        if not local or not remote:
            raise ConfigError(f"{name}: empty path in {out!r}")
        return OutputTarget(local_path(local), str(remote))
    if isinstance(out, (str, os.PathLike)):
        text = os.fspath(out)
        if not text:
            raise ConfigError(f"{name}: empty path")
        if is_local(text):
            return OutputTarget(local_path(text), None)
        return OutputTarget(None, text)
    raise ConfigError(f"{name}: expected a directory, a URL or a (local, remote) tuple, got {out!r}")


def check_backend(backend: object, *, name: str = "backend") -> Backend | None:
    """Validate a ``backend=`` argument: ``None`` or a :class:`~astreaming.storage.Backend` instance.

    Raises:
        ConfigError: ``backend`` is something else (a class or a factory: this argument takes an instance).
    """
    if backend is None or isinstance(backend, Backend):
        return backend
    raise ConfigError(
        f"{name}: expected an astreaming.storage.Backend instance (not yet opened), got {backend!r}"
    )


def remote_backend(url: str, *, timeout: float, backend: Backend | None) -> Backend:
    """The backend that serves ``url``: the injected one if given, else the one its scheme selects."""
    return backend if backend is not None else backend_for(url, timeout=timeout)
