"""Which credentials the gs:// backend sends: explicit keys, nothing (anonymous), or a clear error.

A small aiohttp server plays both Google's OAuth token endpoint and the GCS JSON API, and records the
Authorization header of every object request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from astreaming.errors import ConfigError, PermissionDenied
from astreaming.storage.gcs import GCSBackend

pytestmark = pytest.mark.timeout(60)
SEEN = web.AppKey("seen", list)


async def token(request: web.Request) -> web.Response:
    form = await request.post()
    if form.get("refresh_token") != "refresh-me":
        return web.json_response({"error": "invalid_grant"}, status=400)
    return web.json_response({"access_token": "tok-123", "expires_in": 3600, "token_type": "Bearer"})


async def media(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization")
    request.app[SEEN].append(auth)
    if auth is None:
        return web.Response(body=b"public bytes")
    if auth != "Bearer tok-123":
        return web.Response(status=401, text="bad token")
    return web.Response(body=b"private bytes")


@pytest.fixture
async def google() -> AsyncIterator[tuple[str, list[str | None]]]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/token", token)
    app.router.add_get("/storage/v1/b/bk/o/{name}", media)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", app[SEEN]
    await runner.cleanup()


@pytest.mark.usefixtures("no_google_env")
async def test_explicit_credentials_are_sent(google: tuple[str, list[str | None]], tmp_path: Path) -> None:
    url, seen = google
    creds = tmp_path / "adc.json"
    creds.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "cid",
                "client_secret": "csecret",
                "refresh_token": "refresh-me",
                "token_uri": f"{url}/token",
            }
        )
    )
    async with GCSBackend(api_root=url, service_file=str(creds)) as b:
        assert await b.read_bytes("gs://bk/x") == b"private bytes"
    assert seen == ["Bearer tok-123"]


@pytest.mark.usefixtures("no_google_env")
async def test_no_credentials_means_anonymous(google: tuple[str, list[str | None]]) -> None:
    url, seen = google
    async with GCSBackend(api_root=url) as b:
        assert await b.read_bytes("gs://bk/x") == b"public bytes"
        assert await b.read_bytes("gs://bk/y") == b"public bytes"
    assert seen == [None, None]
    async with GCSBackend(api_root=url, anonymous=False) as b:
        with pytest.raises(PermissionDenied, match="no Google Cloud credentials"):
            await b.read_bytes("gs://bk/x")
    assert len(seen) == 2  # refused before any request


@pytest.mark.usefixtures("no_google_env")
async def test_broken_explicit_credentials_are_an_error(
    google: tuple[str, list[str | None]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, seen = google
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    async with GCSBackend(api_root=url) as b:
        with pytest.raises(ConfigError, match="credentials"):
            await b.read_bytes("gs://bk/x")
    # Anonymous access (and an emulator) never looks at the broken setting.
    async with GCSBackend(api_root=url, anonymous=True) as b:
        assert await b.read_bytes("gs://bk/x") == b"public bytes"
    async with GCSBackend(emulator_host=url) as b:
        assert await b.read_bytes("gs://bk/x") == b"public bytes"
    assert seen == [None, None]
