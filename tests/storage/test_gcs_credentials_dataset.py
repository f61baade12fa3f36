"""Streaming from a GCS endpoint that checks credentials: a service-account key found through
``GOOGLE_APPLICATION_CREDENTIALS``, and anonymous reads of a public bucket, through ``StreamingDataset``
in the main process and in spawned DataLoader workers (each process obtains its own token).

fake-gcs-server checks nothing, so ``GCSGate`` (tests/storage/gcs_gate.py) stands in front of it: an OAuth
token endpoint that verifies the key's JWT signature, and a forwarder that refuses requests without the
token it issued. The stream reaches it as a real endpoint would be reached (``GCSBackend(api_root=...)``,
a Private Service Connect address for instance), so the backend authenticates as it does against Google.
"""

from __future__ import annotations

import functools
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gcs_gate import TOKEN, GCSGate, gcs_backend, service_account_key

from astreaming import MDSWriter, Stream, StreamingDataLoader, StreamingDataset
from astreaming.errors import PermissionDenied
from astreaming.testing.servers import FakeGCSServer

pytestmark = pytest.mark.timeout(180)

BUCKET = "gated"
SAMPLES = 60


@pytest.fixture(scope="module")
def uploaded(gcs_server: FakeGCSServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A dataset in fake-gcs-server, uploaded around the gate; returns its prefix."""
    root = tmp_path_factory.mktemp("gated") / "ds"
    with MDSWriter(out=str(root), columns={"id": "int", "text": "str"}, size_limit=200) as writer:
        for i in range(SAMPLES):
            writer.write({"id": i, "text": f"sample {i}"})
    gcs_server.create_bucket(BUCKET)
    for path in sorted(root.iterdir()):
        gcs_server.put_object(BUCKET, f"ds/{path.name}", path.read_bytes())
    return f"gs://{BUCKET}/ds"


@pytest.fixture
def private_gate(gcs_server: FakeGCSServer) -> Iterator[GCSGate]:
    with GCSGate(gcs_server.url, private=True) as gate:
        yield gate


def _dataset(remote: str, gate: GCSGate, local: Path) -> StreamingDataset:
    backend = functools.partial(gcs_backend, api_root=gate.url)
    return StreamingDataset(streams=[Stream(remote=remote, local=str(local), backend=backend)], batch_size=4)


@pytest.mark.usefixtures("no_google_env")
@pytest.mark.parametrize("workers", [0, 2], ids=["0w", "2w-spawn"])
def test_service_account_key_from_the_environment(
    uploaded: str, private_gate: GCSGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    key = tmp_path / "trainer.json"
    private_gate.public_key = service_account_key(key, f"{private_gate.url}/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    ds = _dataset(uploaded, private_gate, tmp_path / "cache")
    try:
        if workers:
            loader = StreamingDataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
            ids = sorted(np.concatenate([b["id"].numpy() for b in loader]).tolist())
        else:
            ids = sorted(int(s["id"]) for s in ds)
        # With a token in hand, neither it nor the key leaves the process in a repr or a pickle (spawned
        # workers read the key file themselves).
        private = json.loads(key.read_text())["private_key"].splitlines()[1]
        for text in (repr(ds), str(pickle.dumps(ds)), repr(ds.streams)):
            assert TOKEN not in text and private not in text
    finally:
        ds.close()
    assert ids == list(range(SAMPLES))
    assert private_gate.seen["refused"] == 0
    # Tokens are obtained per backend a process builds (at most two: the index's and the shards'), then
    # reused: never one per request.
    assert 1 <= private_gate.seen["token"] <= 2 * (1 + workers) < private_gate.seen["authorised"]


@pytest.mark.usefixtures("no_google_env")
def test_a_key_the_endpoint_does_not_trust_is_permission_denied(
    uploaded: str, private_gate: GCSGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = tmp_path / "trusted.json"
    private_gate.public_key = service_account_key(trusted, f"{private_gate.url}/token")
    forged = tmp_path / "forged.json"
    service_account_key(forged, f"{private_gate.url}/token")  # same account, another key
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(forged))
    with pytest.raises(PermissionDenied, match="access token"):
        _dataset(uploaded, private_gate, tmp_path / "cache")
    assert private_gate.seen["token"] == 0 and private_gate.seen["authorised"] == 0


@pytest.mark.usefixtures("no_google_env")
def test_no_credentials_reads_a_public_bucket_anonymously(
    uploaded: str, gcs_server: FakeGCSServer, tmp_path: Path
) -> None:
    with GCSGate(gcs_server.url, private=False) as gate:
        ds = _dataset(uploaded, gate, tmp_path / "cache")
        try:
            ids = sorted(int(s["id"]) for s in ds)
        finally:
            ds.close()
        assert ids == list(range(SAMPLES))
        assert gate.seen["anonymous"] > 0 and gate.seen["token"] == 0 and gate.seen["authorised"] == 0


@pytest.mark.usefixtures("no_google_env")
def test_no_credentials_against_a_private_bucket_is_permission_denied(
    uploaded: str, private_gate: GCSGate, tmp_path: Path
) -> None:
    with pytest.raises(PermissionDenied):
        _dataset(uploaded, private_gate, tmp_path / "cache")
    assert private_gate.seen["refused"] >= 1
