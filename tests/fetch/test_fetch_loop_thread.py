"""The per-process loop thread: results and errors cross threads, fork gets a fresh loop, exit joins it."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astreaming.errors import TransientStorageError
from astreaming.fetch.loop_thread import LoopThread, get_loop_thread


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    thread = LoopThread(name="test-loop")
    yield thread
    thread.stop()


async def _where() -> tuple[int, int]:
    await asyncio.sleep(0)
    return os.getpid(), threading.get_native_id()


async def _fail() -> None:
    await asyncio.sleep(0)
    raise TransientStorageError("503 from gs://b/shard.00001.mds", url="gs://b/shard.00001.mds")


def test_call_runs_on_the_loop_thread_and_returns(lt: LoopThread) -> None:
    pid, ident = lt.call(_where())
    assert pid == os.getpid()
    assert ident != threading.get_native_id()
    assert lt.run(_where()).result(5) == (pid, ident)  # same thread every time


def test_errors_propagate_with_their_type(lt: LoopThread) -> None:
    with pytest.raises(TransientStorageError, match="503") as info:
        lt.call(_fail())
    assert info.value.url == "gs://b/shard.00001.mds"
    with pytest.raises(TransientStorageError):
        lt.run(_fail()).result(5)


def test_call_timeout_cancels_the_coroutine(lt: LoopThread) -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        lt.call(slow(), timeout=0.05)
    assert cancelled.wait(5)


def test_call_from_the_loop_thread_refuses_instead_of_deadlocking(lt: LoopThread) -> None:
    async def reenter() -> None:
        lt.call(_where())

    with pytest.raises(RuntimeError, match="deadlock"):
        lt.call(reenter())


def test_stop_cancels_pending_work_and_joins(lt: LoopThread) -> None:
    cancelled = threading.Event()
    running = threading.Event()

    async def forever() -> None:
        running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = lt.run(forever())
    assert running.wait(30)  # it is inside its sleep (a task cancelled before it ran would not notice)
    lt.stop()
    lt.stop()  # idempotent
    assert cancelled.is_set()
    assert future.cancelled()
    assert not lt.alive
    with pytest.raises(RuntimeError, match="stopped"):
        lt.run(_where())


def test_get_loop_thread_is_shared_and_recreated_after_stop() -> None:
    first = get_loop_thread()
    assert get_loop_thread() is first
    first.stop()
    second = get_loop_thread()
    assert second is not first
    assert second.call(_where())[0] == os.getpid()


def _child_uses_loop(parent_ident: int, results: Any) -> None:
    lt = get_loop_thread()
    pid, ident = lt.call(_where())
    results.put((lt.pid == os.getpid(), pid == os.getpid(), ident != parent_ident, ident))


def test_forked_child_gets_its_own_loop() -> None:
    parent = get_loop_thread()
    _, parent_ident = parent.call(_where())
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    proc = ctx.Process(target=_child_uses_loop, args=(parent_ident, results))
    proc.start()
    owns, ran_in_child, other_thread, _ = results.get(timeout=30)
    proc.join(30)
    assert proc.exitcode == 0
    assert owns and ran_in_child and other_thread
    # The parent's loop is untouched by the child.
    assert get_loop_thread() is parent
    assert parent.call(_where()) == (os.getpid(), parent_ident)


def test_parent_loop_object_refuses_use_in_a_forked_child() -> None:
    parent = get_loop_thread()
    ctx = mp.get_context("fork")
    results = ctx.Queue()

    def child() -> None:
        try:
            parent.run(_where())
        except RuntimeError as exc:
            results.put(str(exc))
        else:
            results.put("no error")

    proc = ctx.Process(target=child)
    proc.start()
    message = results.get(timeout=30)
    proc.join(30)
    assert "parent process" in message


def test_process_exits_promptly_and_cancels_pending_work(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    code = textwrap.dedent(
        f"""
        import asyncio
        from astreaming.fetch.loop_thread import get_loop_thread

        async def forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                open({str(marker)!r}, "w").write("yes")
                raise

        lt = get_loop_thread()
        lt.run(forever())
        print(lt.call(asyncio.sleep(0, result="ready")))
        """
    )
    # A hang at exit raises TimeoutExpired (how fast the exit is, is not this test's business).
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ready"
    assert out.stderr == ""
    assert marker.read_text() == "yes"  # the atexit hook stopped the loop (not just a killed daemon)
