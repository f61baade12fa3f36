"""One client per process, event loop and settings (astreaming.storage.shared), on the real backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from storage_cases import StorageCase

from astreaming.storage.shared import acquire, client_count, clients_built


def kind_of(case: StorageCase) -> str:
    return "s3" if case.name == "s3" else "aiohttp"


async def test_backends_share_one_client_until_the_last_closes(remote_case: StorageCase) -> None:
    remote_case.put("s.bin", b"shared")
    url = remote_case.url("s.bin")
    loop = asyncio.get_running_loop()
    open_before, built_before = client_count(loop), clients_built(kind_of(remote_case))
    first, second = remote_case.make(), remote_case.make()
    async with first:
        async with second:
            # Both ask at once for the first time: one client is built.
            got = await asyncio.gather(first.read_bytes(url), second.read_bytes(url))
            assert got == [b"shared", b"shared"]
            assert client_count(loop) == open_before + 1
        assert client_count(loop) == open_before + 1  # the other backend still holds it
        assert await first.read_bytes(url) == b"shared"
    assert client_count(loop) == open_before  # the last user closed it
    assert clients_built(kind_of(remote_case)) - built_before == 1


async def test_other_settings_get_another_client(remote_case: StorageCase) -> None:
    remote_case.put("t.bin", b"timeouts")
    url = remote_case.url("t.bin")
    built_before = clients_built(kind_of(remote_case))
    first = remote_case.make()
    second = remote_case.make()
    second.timeout = first.timeout + 1  # a client is built with its timeouts
    async with first, second:
        assert [await first.read_bytes(url), await second.read_bytes(url)] == [b"timeouts"] * 2
    assert clients_built(kind_of(remote_case)) - built_before == 2


async def test_a_failed_build_leaves_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    open_before = client_count(loop)
    closed: list[str] = []

    def failing() -> contextlib.AbstractAsyncContextManager[str]:
        raise ConnectionError("endpoint unreachable")

    @contextlib.asynccontextmanager
    async def working() -> AsyncIterator[str]:
        yield "client"
        closed.append("client")

    key = ("test", "failed-build")
    with pytest.raises(ConnectionError):
        await acquire(key, failing)
    assert client_count(loop) == open_before
    lease = await acquire(key, working)  # the next user builds it
    assert lease.client == "client"
    await lease.release()
    await lease.release()  # idempotent: released once
    assert closed == ["client"]
    with pytest.raises(RuntimeError, match="released"):
        _ = lease.client
