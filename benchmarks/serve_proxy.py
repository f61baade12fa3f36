"""Serve a dataset over HTTP, S3 (moto) or GCS (fake-gcs-server) behind a fault proxy, in its own process.

The benchmarks run the server and the proxy here, not in the measured process: both are Python threads
that would otherwise compete for the measured process's GIL. Started by :func:`serve` (a context
manager); by hand:

    python benchmarks/serve_proxy.py --root DIR --kind http --latency 0.02 --bandwidth 50e6

Prints one JSON line ``{"url": <proxy base URL>, "upstream": <server URL>, "root": <URL of the dataset
through the proxy>, "env": {...}}``, then answers each ``stats`` line on stdin with the proxy's
counters as JSON (``bytes_sent``, ``requests``, ...), and exits when stdin closes.

For ``--kind s3`` the files are uploaded to moto's bucket ``bench`` under ``--prefix`` and ``root`` is
``s3://bench/<prefix>``; ``env`` holds what a client needs (``S3_ENDPOINT_URL`` = the proxy, fake
credentials), for astreaming and mosaic alike. ``--kind s3rver`` does the same with s3rver (Node.js,
``bash benchmarks/setup_s3rver.sh``), which streams a ranged GET from disk where moto copies the whole
object on every GET: a server that is not the bottleneck of a link of many connections. ``--kind gs``
likewise stores them in fake-gcs-server (the
real Go server; its own process, so its CPU is not in ``cpu_s``): ``root`` is ``gs://bench/<prefix>`` and
``env`` is ``STORAGE_EMULATOR_HOST`` = the proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

BUCKET = "bench"
HERE = Path(__file__).resolve().parent


def s3_env(endpoint: str, key: str = "testing") -> dict[str, str]:
    """Environment for an S3 client of moto (or s3rver, whose key is ``S3RVER``) at ``endpoint`` (no real
    AWS config is read)."""
    return {
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/bench-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/bench-aws-credentials",
    }


class Served:
    """A running ``serve_proxy.py`` process: its URLs and a way to read the proxy's counters."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc = proc
        self.url: str = info["url"]
        self.root: str = info["root"]
        self.env: dict[str, str] = info["env"]

    def stats(self) -> dict[str, Any]:
        """The proxy's counters now (``bytes_sent``, ``requests``, ...)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return result


@contextlib.contextmanager
def serve(
    root: str | Path,
    kind: str,
    latency: float,
    bandwidth: float | None,
    prefix: str = "data",
    connection_bandwidth: float | None = None,
) -> Iterator[Served]:
    """Run ``serve_proxy.py`` for ``root`` until the block ends."""
    args = [sys.executable, str(HERE / "serve_proxy.py"), "--root", str(root), "--kind", kind]
    args += ["--latency", str(latency), "--prefix", prefix]
    if bandwidth:
        args += ["--bandwidth", str(bandwidth)]
    if connection_bandwidth:
        args += ["--connection-bandwidth", str(connection_bandwidth)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"serve_proxy.py exited with {proc.wait()} before serving")
        yield Served(proc, json.loads(line))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class S3rverServer:
    """s3rver in its own Node.js process, on a free port of 127.0.0.1, storing objects under a temporary
    directory; the bucket ``BUCKET`` exists once :meth:`__enter__` returns. Its credentials are
    ``S3RVER``/``S3RVER``."""

    KEY = "S3RVER"

    def __init__(self) -> None:
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> S3rverServer:
        exe = Path(os.environ.get("S3RVER_DIR", "/work/s3rver")) / "node_modules" / ".bin" / "s3rver"
        if not exe.exists():
            raise RuntimeError(f"{exe} not found: run `bash benchmarks/setup_s3rver.sh` first")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="s3rver-")
        argv = [str(exe), "-d", self._dir.name, "-a", "127.0.0.1", "-p", str(port), "--silent"]
        self._proc = subprocess.Popen([*argv, "--configure-bucket", BUCKET], stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return self
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"s3rver did not start on port {port}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def client(self) -> Any:
        """A synchronous botocore S3 client of this server (to upload the dataset)."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.KEY,
        )


def _answer(stdin: IO[str], proxy: Any, server_pid: int | None = None) -> None:
    for line in stdin:
        if line.strip() == "stats":
            stats = dataclasses.asdict(proxy.statistics())
            times = os.times()
            # Server and proxy together (with the server's own process, where it runs in one).
            stats["cpu_s"] = (
                times.user + times.system + (_cpu(f"/proc/{server_pid}/stat") if server_pid else 0)
            )
            threads = [t for t in threading.enumerate() if t.name == "astreaming-faultproxy"]
            stats["proxy_cpu_s"] = _thread_cpu(threads[0].native_id) if threads else 0.0
            print(json.dumps(stats), flush=True)


def _thread_cpu(tid: int | None) -> float:
    """CPU seconds of one thread of this process (Linux ``/proc``; 0 elsewhere)."""
    return _cpu(f"/proc/self/task/{tid}/stat")


def _cpu(stat: str) -> float:
    """CPU seconds of the task whose ``/proc/.../stat`` is ``stat`` (0 where unreadable)."""
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", required=True, help="dataset directory to serve")
    parser.add_argument("--kind", choices=["http", "s3", "s3rver", "gs"], default="http")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every request")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s shared by all connections")
    parser.add_argument("--connection-bandwidth", type=float, default=None, help="bytes/s per connection")
    parser.add_argument("--prefix", default="data", help="key prefix of the dataset in the S3 bucket")
    args = parser.parse_args()

    from astreaming.testing.faults import FaultPlan
    from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer
    from astreaming.testing.threadedproxy import ThreadedFaultProxy

    root = Path(args.root)
    plan = FaultPlan(
        latency=args.latency, bandwidth=args.bandwidth, connection_bandwidth=args.connection_bandwidth
    )
    with contextlib.ExitStack() as stack:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        if args.kind == "http":
            server: Any = stack.enter_context(StaticHTTPServer(root))
        elif args.kind == "gs":
            server = stack.enter_context(FakeGCSServer())
            server.create_bucket(BUCKET)
            for path in files:
                server.put_object(
                    BUCKET, f"{args.prefix}/{path.relative_to(root).as_posix()}", path.read_bytes()
                )
        else:
            if args.kind == "s3rver":
                server = stack.enter_context(S3rverServer())
            else:
                server = stack.enter_context(MotoS3Server())
                server.create_bucket(BUCKET)
            client = server.client()
            for path in files:
                key = f"{args.prefix}/{path.relative_to(root).as_posix()}"
                client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
            client.close()
        proxy = stack.enter_context(ThreadedFaultProxy(server.url, plan))
        if args.kind == "http":
            info = {"url": proxy.url, "upstream": server.url, "root": proxy.url, "env": {}}
        elif args.kind == "gs":
            info = {"url": proxy.url, "upstream": server.url, "root": f"gs://{BUCKET}/{args.prefix}"}
            info["env"] = {"STORAGE_EMULATOR_HOST": proxy.url}
        else:
            info = {"url": proxy.url, "upstream": server.url, "root": f"s3://{BUCKET}/{args.prefix}"}
            info["env"] = s3_env(proxy.url, S3rverServer.KEY if args.kind == "s3rver" else "testing")
        print(json.dumps(info), flush=True)
        gcs_proc = getattr(server, "_proc", None) if args.kind in ("gs", "s3rver") else None
        _answer(sys.stdin, proxy, gcs_proc.pid if gcs_proc is not None else None)
    os._exit(0)  # moto's and the servers' daemon threads need no orderly interpreter shutdown


if __name__ == "__main__":
    main()
