"""Azurite (Microsoft's Azure Storage emulator, npm) for the Azure tests: install once, start, stop.

``npm install azurite@<pinned>`` goes into ``~/.cache/astreaming/azurite-<version>`` (override with
``ASTREAMING_AZURITE_DIR``), outside the repository, under a file lock so parallel test processes
install it once. Each :class:`Azurite` runs the blob service in memory on 127.0.0.1 and a port the
OS picks, and is stopped (and waited for) on exit.

When node or npm is missing or the install fails, :func:`azurite_unavailable` says why and the Azure
tests skip with that reason.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

AZURITE_VERSION = "3.37.0"
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"listens on (http://127\.0\.0\.1:(\d+))")


def install_dir() -> Path:
    """Where the pinned Azurite lives."""
    override = os.environ.get("ASTREAMING_AZURITE_DIR")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "astreaming" / f"azurite-{AZURITE_VERSION}"


def _binary(root: Path) -> Path:
    return root / "node_modules" / ".bin" / "azurite-blob"


_unavailable: str | None = None
_checked = False


def azurite_unavailable() -> str | None:
    """``None`` when Azurite can run (installing it if needed), else the reason it cannot."""
    global _unavailable, _checked
    if not _checked:
        _checked = True
        _unavailable = _ensure_installed()
    return _unavailable


def _ensure_installed() -> str | None:
    if shutil.which("node") is None:
        return "Azure tests need Azurite: node is not installed (apt-get install nodejs npm)"
    root = install_dir()
    if _binary(root).exists():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return f"Azure tests need Azurite: npm is not installed and {_binary(root)} is missing"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing it right now
        if _binary(root).exists():
            return None
        cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), f"azurite@{AZURITE_VERSION}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"Azure tests need Azurite: `{' '.join(cmd)}` failed: {e}"
        if done.returncode != 0 or not _binary(root).exists():
            return f"Azure tests need Azurite: `{' '.join(cmd)}` failed: {done.stderr.strip()[-500:]}"
    return None


class Azurite:
    """A running Azurite blob service; a sync context manager.

    Attributes:
        endpoint: The blob endpoint, ``http://127.0.0.1:<port>/devstoreaccount1``.
        connection_string: A connection string for the development account.
    """

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.endpoint = ""
        self.connection_string = ""
        self._proc: subprocess.Popen[str] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> Azurite:
        """Start Azurite and wait until it listens."""
        reason = azurite_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        cmd = [
            str(_binary(install_dir())),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "1024",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self._workdir.name
        )
        found = threading.Event()

        def read() -> None:
            # Keep draining stdout for the whole run so Azurite never blocks on a full pipe.
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self._output.append(line)
                m = _LISTENING.search(line)
                if m and not self.endpoint:
                    self.endpoint = f"{m.group(1)}/{ACCOUNT}"
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, name="azurite-stdout", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        found.wait(self.start_timeout)
        if not self.endpoint:
            self.stop()
            late = time.monotonic() >= deadline
            raise RuntimeError(
                f"Azurite did not start{' in time' if late else ''}: {''.join(self._output)[-2000:]}"
            )
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )
        return self

    def stop(self) -> None:
        """Terminate Azurite and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # The process is gone, so its stdout reaches EOF and the reader thread ends; close after.
        if self._reader is not None:
            self._reader.join(10)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def azurite_fixture() -> Iterator[Azurite]:
    """Body of a session-scoped pytest fixture: a running Azurite, or a skip that prints the reason."""
    import pytest

    reason = azurite_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Azurite() as server:
        yield server
