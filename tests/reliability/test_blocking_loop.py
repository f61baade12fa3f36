"""``run_blocking`` (the dataset constructor's short-lived loop) leaves no socket open behind it.

The CI failure this guards against: a TLS connection closed gracefully by the index download waits for
the peer's ``close_notify``; the constructor's loop ended first, the socket stayed open, and the garbage
collector reported an "unclosed transport" ResourceWarning at a random later moment (in another test,
and in the forked DataLoader workers that inherited it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from astreaming.fetch.blocking import run_blocking

from .tls import self_signed


@pytest.fixture
def silent_tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server that completes the handshake and then never reads: it never answers close_notify."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        tls = context.wrap_socket(conn, server_side=True)
        accepted.append(tls)
        done.wait(60)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], cert
    finally:
        done.set()
        thread.join(60)
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_gracefully_closed_tls_connection_is_closed_when_the_call_returns(
    silent_tls_server: tuple[int, Path],
) -> None:
    port, cert = silent_tls_server

    async def connect_then_close() -> socket.socket:
        client = ssl.create_default_context(cafile=str(cert))
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        raw = writer.get_extra_info("socket")
        writer.close()  # graceful: sends close_notify and waits for the (silent) peer's answer
        return raw  # type: ignore[no-any-return]

    raw = run_blocking(connect_then_close())
    assert raw.fileno() == -1  # closed by the time the call returns, not by the garbage collector


def test_a_connection_left_open_by_the_coroutine_is_closed_too() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:

        async def leave_open() -> tuple[socket.socket, asyncio.StreamWriter]:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            return writer.get_extra_info("socket"), writer  # the writer outlives the coroutine

        raw, writer = run_blocking(leave_open())
        assert raw.fileno() == -1
        assert writer.transport.is_closing()
    finally:
        listener.close()


def test_a_unix_socket_connection_left_open_is_closed_too(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(tmp_path / "s"))
        listener.listen()

        async def leave_open() -> tuple[socket.socket, asyncio.StreamWriter]:
            _, writer = await asyncio.open_unix_connection(str(tmp_path / "s"))
            return writer.get_extra_info("socket"), writer

        raw, writer = run_blocking(leave_open())
        assert raw.fileno() == -1
        assert writer.transport.is_closing()
    finally:
        listener.close()


def test_tasks_left_running_are_cancelled_before_the_call_returns() -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def spawn() -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)  # let it start waiting
        return task

    task = run_blocking(spawn())
    assert cancelled.is_set() and task.cancelled()


def test_the_result_and_errors_come_through() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> int:
        raise ValueError("from the coroutine")

    assert run_blocking(answer()) == 42
    with pytest.raises(ValueError, match="from the coroutine"):
        run_blocking(fail())
