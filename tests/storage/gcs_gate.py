"""A stand-in for Google's side of authentication, in front of fake-gcs-server (which checks nothing).

``GCSGate`` runs in its own thread: ``POST /token`` is an OAuth token endpoint that accepts only a JWT
assertion signed by the service account's private key (checked with its public key, as Google does), and
every other request is forwarded to fake-gcs-server, when ``private``, only with the token it issued.
It counts what it saw. ``gcs_backend`` is the backend factory a ``Stream`` is given (module level, so
spawned DataLoader workers can unpickle it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from astreaming.storage.gcs import GCSBackend

TOKEN = "tok-service-account"
_FORWARDED = ("Range", "Content-Type")
_RETURNED = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges")


def gcs_backend(remote_root: str, *, timeout: float, api_root: str) -> GCSBackend:
    """The backend of a stream that reads through the gate (a real endpoint: credentials apply)."""
    return GCSBackend(api_root=api_root, timeout=timeout)


def service_account_key(path: Path, token_uri: str) -> rsa.RSAPublicKey:
    """Write a service-account key file (a fresh RSA key); returns the public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "k1",
                "private_key": pem.decode(),
                "client_email": "trainer@test-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return key.public_key()


class GCSGate:
    """Token endpoint plus an authorising forwarder to ``upstream`` (see the module docstring)."""

    def __init__(self, upstream: str, *, private: bool) -> None:
        self.upstream = upstream
        self.private = private
        self.public_key: rsa.RSAPublicKey | None = None
        self.seen: Counter[str] = Counter()  # "token", "authorised", "anonymous", "refused"
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gcs-gate", daemon=True)

    def __enter__(self) -> GCSGate:
        self._thread.start()
        self._ready.wait(30)
        if not self.url:
            raise RuntimeError("the GCS gate did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        async with aiohttp.ClientSession() as client:
            self._client = client
            try:
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
                self._ready.set()
                await self._stop.wait()
            finally:
                self._ready.set()
                await runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            assert self.public_key is not None
            claims: dict[str, Any] = jwt.decode(
                str(form["assertion"]), self.public_key, algorithms=["RS256"], audience=f"{self.url}/token"
            )
        except (KeyError, AssertionError, jwt.InvalidTokenError) as e:
            return web.json_response({"error": "invalid_grant", "detail": str(e)}, status=400)
        if claims.get("iss") != "trainer@test-project.iam.gserviceaccount.com":
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.seen["token"] += 1
        return web.json_response({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if auth is None and not self.private:
            self.seen["anonymous"] += 1
        elif auth == f"Bearer {TOKEN}":
            self.seen["authorised"] += 1
        else:
            self.seen["refused"] += 1
            return web.json_response({"error": {"code": 401, "message": "no valid credentials"}}, status=401)
        headers = {k: request.headers[k] for k in _FORWARDED if k in request.headers}
        async with self._client.request(
            request.method, f"{self.upstream}{request.rel_url}", headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            kept = {k: upstream.headers[k] for k in _RETURNED if k in upstream.headers}
            kept.pop("Content-Length", None)  # aiohttp sets it from the body
            return web.Response(status=upstream.status, body=body, headers=kept)
