"""A remote with a query string (SAS token, presigned URL): every object is fetched as
``<dir>/<name>?<query>``, the query kept byte for byte, and the signature never shown (issue 10)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from astreaming import Stream, StreamingDataset
from astreaming.errors import PermissionDenied

from .conftest import MakeDataset
from .servers import Cleanup, LoopServer, serve_app

# A signature with characters that re-encoding would change ('+', '/', '=', '%2B').
QUERY = "sv=2024-05-04&se=2031-01-01T00%3A00%3A00Z&sp=r&sig=Ab%2Bc/d+e=="
SIGNATURE = "Ab%2Bc/d+e=="


class SignedServer(LoopServer):
    """Serves ``root`` only to requests carrying exactly ``QUERY``; records every raw request target."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.requests: list[str] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.raw_path)
        if request.raw_path.partition("?")[2] != QUERY:
            return web.Response(status=403, text="signature mismatch")
        path = self.root / request.path.lstrip("/")
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    async def _serve(self) -> Cleanup:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.url, cleanup = await serve_app(app)
        return cleanup


@pytest.fixture
def signed(make_dataset: MakeDataset, tmp_path: Path) -> Iterator[SignedServer]:
    site = tmp_path / "site"
    site.mkdir()
    make_dataset().rename(site / "ds")
    with SignedServer(site) as server:
        yield server


def test_index_and_shards_keep_the_query_at_the_end(signed: SignedServer, tmp_path: Path) -> None:
    remote = f"{signed.url}/ds?{QUERY}"
    ds = StreamingDataset(remote=remote, local=str(tmp_path / "cache"), batch_size=1)
    assert [s["id"] for s in ds] == list(range(60))
    assert signed.requests[0] == f"/ds/index.json?{QUERY}"
    assert all(r.startswith("/ds/") and r.endswith(f"?{QUERY}") for r in signed.requests)
    assert len(signed.requests) == 1 + ds.num_shards
    assert ds[7]["id"] == 7


def test_split_goes_before_the_query(signed: SignedServer, tmp_path: Path) -> None:
    stream = Stream(remote=f"{signed.url}/?{QUERY}", local=str(tmp_path / "cache"), split="ds")
    ds = StreamingDataset(streams=[stream], batch_size=1)
    assert sum(1 for _ in ds) == 60
    assert signed.requests[0] == f"/ds/index.json?{QUERY}"


def test_a_wrong_signature_is_refused_without_showing_it(signed: SignedServer, tmp_path: Path) -> None:
    wrong = QUERY.replace("sp=r", "sp=rw")
    with pytest.raises(PermissionDenied) as info:
        StreamingDataset(remote=f"{signed.url}/ds?{wrong}", local=str(tmp_path / "c"), batch_size=1)
    assert "/ds/index.json" in str(info.value)
    assert SIGNATURE not in str(info.value) and "d+e" not in str(info.value)
    assert "sig=REDACTED" in str(info.value)
