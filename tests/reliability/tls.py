"""A self-signed certificate for 127.0.0.1 and an HTTPS static server, for TLS tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .servers import Cleanup, LoopServer, serve_app


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (a certificate for 127.0.0.1 signed by itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class HTTPSStaticServer(LoopServer):
    """Serves ``root`` over https://127.0.0.1 with a self-signed certificate."""

    def __init__(self, root: Path, cert: Path, key: Path) -> None:
        super().__init__()
        self.root = root
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)

    async def _serve(self) -> Cleanup:
        app = web.Application()
        app.router.add_static("/", self.root)
        self.url, cleanup = await serve_app(app, self.context)
        return cleanup


class TLSForwarder(LoopServer):
    """Terminates TLS on 127.0.0.1 (self-signed) and forwards the bytes to a plain TCP ``upstream``."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass  # a peer hung up mid-stream: the forwarder just stops relaying this connection
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _serve(self) -> Cleanup:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        async def cleanup() -> None:
            server.close()
            for writer in self._writers:  # connections still open (keep-alive) when the test ends
                writer.close()
            for writer in self._writers:
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()

        return cleanup
