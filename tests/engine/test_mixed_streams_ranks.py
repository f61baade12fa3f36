"""Several streams on different stores at once, the way training runs them: two rank processes, DataLoader
workers (none, fork, spawn), one ``cache_limit`` for all the streams' cache directories that forces
eviction, and a restart mid-epoch from each rank's checkpoint into a fresh and into the warm cache.

The streams: a local directory, moto S3, fake-gcs-server (zstd shards with hashes), a static HTTP server
and Azurite. Each batching method runs with a weighting (``proportion``, ``repeat``, ``choose``). The
restarted ranks continue exactly where they stopped (the unlimited run of the same job is the reference),
and the cache directories never hold more than the limit. And when one stream's remote fails (its
``index.json`` missing, a shard answering 404, a wrong key), every rank fails with the typed error naming
that stream's URL, and none hangs.

Marked ``node`` (run by ``nox -s node``): nine rank processes per case.
"""

from __future__ import annotations

import base64
import collections
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astreaming.testing.servers import FakeGCSServer, MotoS3Server, StaticHTTPServer

from .conftest import MakeDataset
from .remotes import BUCKET, s3_env
from .test_node_cache import Sampler, assert_clean, shard_sizes
from .test_resume_ranks import run_ranks

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))
from azurite import ACCOUNT, Azurite, azurite_fixture  # tests/storage: not a package

JOB = Path(__file__).with_name("resume_job.py")
RANKS = 2
# (store, samples, first id, writer options): ids never overlap, so every id names its stream.
STORES = [
    ("local", 110, 0, {}),
    ("s3", 90, 10_000, {}),
    ("gs", 70, 20_000, {"compression": "zstd", "hashes": ["xxh64"]}),
    ("http", 50, 30_000, {}),
    ("azure", 60, 40_000, {}),
]
# (batching method, weights per stream in STORES order, workers, context, restart)
CASES = [
    ("random", [{"proportion": p} for p in (0.3, 0.25, 0.2, 0.15, 0.1)], 2, "fork", "warm-cache"),
    ("stratified", [{"repeat": 0.5}, {"choose": 60}, {}, {"repeat": 2}, {}], 2, "spawn", "fresh-cache"),
    ("per_stream", [{}, {"repeat": 1.5}, {"choose": 35}, {}, {}], 0, None, "warm-cache"),
    ("device_per_stream", [{}, {}, {"repeat": 2}, {}, {"choose": 30}], 2, "fork", "fresh-cache"),
]


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    yield from azurite_fixture()


@pytest.fixture
def stores(
    make_dataset: MakeDataset,
    s3_server: MotoS3Server,
    gcs_server: FakeGCSServer,
    azurite: Azurite,
    tmp_path: Path,
) -> Iterator[tuple[list[tuple[str, Path]], dict[str, str]]]:
    """Each dataset of STORES in its store: (remote URL, source directory) in order, and the env."""
    from azure.storage.blob import BlobServiceClient

    prefix = uuid.uuid4().hex[:8]
    s3_server.create_bucket(BUCKET)
    gcs_server.create_bucket(BUCKET)
    http_root = tmp_path / "http-root"
    container = f"c{prefix}"
    sdk = BlobServiceClient.from_connection_string(azurite.connection_string)
    sdk.create_container(container)
    remotes: list[tuple[str, Path]] = []
    for store, samples, first, options in STORES:
        source = make_dataset(samples, size_limit=500, first_id=first, name=f"src-{store}", **options)
        files = sorted(source.iterdir())
        if store == "local":
            remotes.append((str(source), source))
            continue
        for path in files:
            key, data = f"{prefix}/{store}/{path.name}", path.read_bytes()
            if store == "s3":
                s3_server.put_object(BUCKET, key, data)
            elif store == "gs":
                gcs_server.put_object(BUCKET, key, data)
            elif store == "http":
                (http_root / store).mkdir(parents=True, exist_ok=True)
                (http_root / store / path.name).write_bytes(data)
            else:
                sdk.get_blob_client(container, key).upload_blob(data, overwrite=True)
        url = {
            "s3": f"s3://{BUCKET}/{prefix}/s3",
            "gs": f"gs://{BUCKET}/{prefix}/gs",
            "azure": f"azure://{ACCOUNT}.blob.core.windows.net/{container}/{prefix}/azure",
        }.get(store)
        remotes.append((url or "", source))
    sdk.close()
    env = {
        **s3_env(s3_server),
        "STORAGE_EMULATOR_HOST": gcs_server.url,
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }
    with StaticHTTPServer(http_root) as http:
        index = [store for store, *_ in STORES].index("http")
        remotes[index] = (f"{http.url}/http", remotes[index][1])
        yield remotes, env


def streams_under(remotes: list[tuple[str, Path]], weights: list[dict[str, Any]], cache: Path) -> list[Any]:
    return [
        {"remote": url, "local": str(cache / store), **weight}
        for (url, _), (store, *_), weight in zip(remotes, STORES, weights, strict=True)
    ]


@pytest.mark.node
@pytest.mark.parametrize(
    ("method", "weights", "workers", "context", "restart"), CASES, ids=[c[0] for c in CASES]
)
def test_mixed_stores_two_ranks_resume_under_one_cache_limit(
    stores: tuple[list[tuple[str, Path]], dict[str, str]],
    tmp_path: Path,
    method: str,
    weights: list[dict[str, Any]],
    workers: int,
    context: str | None,
    restart: str,
) -> None:
    remotes, env = stores
    sizes = [shard_sizes(source) for _, source in remotes]
    total, index = sum(s[0] for s in sizes), sum(s[2] for s in sizes)
    limit = index + int(0.35 * total)
    common = dict(batch_size=6, shuffle=True, shuffle_seed=11, batching_method=method, predownload=8)
    loader = {"num_workers": workers, "context": context}

    def dataset(cache: Path, **extra: Any) -> dict[str, Any]:
        return {**common, "streams": streams_under(remotes, weights, cache), **extra}

    unlimited = {**loader, "phase": "full", "epochs": 2, "dataset": dataset(tmp_path / "free")}
    full = run_ranks(tmp_path, "full", unlimited, env, 300)
    stopped_cache = tmp_path / "job"
    stop = {**loader, "phase": "stop", "stop_after": 5, "dataset": dataset(stopped_cache, cache_limit=limit)}
    with Sampler(stopped_cache) as stopping:
        stopped = run_ranks(tmp_path, "stop", stop, env, 300)
    assert stopped[0]["state"] == stopped[1]["state"]
    local = stopped_cache if restart == "warm-cache" else tmp_path / "restarted"
    resume = {**loader, "phase": "resume", "dataset": dataset(local, cache_limit=limit)}
    with Sampler(local) as resuming:
        resumed = run_ranks(tmp_path, "resume", resume, env, 300)

    for rank in range(RANKS):
        head, (tail, following) = stopped[rank]["epochs"][0], resumed[rank]["epochs"]
        assert head + tail == full[rank]["epochs"][0], f"rank {rank}"
        assert following == full[rank]["epochs"][1], f"rank {rank}: the epoch after the resumed one"
    # Every stream contributed to the epoch, and eviction never let the caches exceed the one limit.
    per_stream = collections.Counter(i // 10_000 for rank in full for i in rank["epochs"][0])
    assert sorted(per_stream) == list(range(len(STORES))), per_stream
    assert stopping.peak <= limit and resuming.peak <= limit, (stopping.peak, resuming.peak, limit)
    assert sum(r["stats"]["evictions"] for r in resumed) > 0, "the limit never made room: no eviction tested"
    assert resumed[0]["state_at_end"]["epoch"] == 1
    assert_clean(local)


def _drop(url: str, env: dict[str, str], s3_server: MotoS3Server) -> None:
    """Delete the object at ``url`` (gs:// or s3://) from its store."""
    bucket, key = url.split("://", 1)[1].split("/", 1)
    if url.startswith("s3://"):
        client = s3_server.client()
        client.delete_object(Bucket=bucket, Key=key)
        client.close()
        return
    name = urllib.parse.quote(key, safe="")
    req = urllib.request.Request(
        f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{bucket}/o/{name}", method="DELETE"
    )
    urllib.request.urlopen(req, timeout=30).close()


def _wrong_key(connection_string: str) -> str:
    fields = dict(item.split("=", 1) for item in connection_string.split(";") if item)
    fields["AccountKey"] = base64.b64encode(b"not-the-account-key-" * 3).decode()
    return ";".join(f"{k}={v}" for k, v in fields.items())


# (fault, workers, context): the failing stream is gs (index), s3 (a shard) or azure (the key).
FAULTS = [("missing-index", 2, "fork"), ("missing-shard", 2, "spawn"), ("bad-credential", 0, None)]


@pytest.mark.node
@pytest.mark.parametrize(("fault", "workers", "context"), FAULTS, ids=[f[0] for f in FAULTS])
def test_one_failing_stream_fails_every_rank_typed_naming_its_url(
    stores: tuple[list[tuple[str, Path]], dict[str, str]],
    s3_server: MotoS3Server,
    tmp_path: Path,
    fault: str,
    workers: int,
    context: str | None,
) -> None:
    remotes, env = stores
    names = [store for store, *_ in STORES]
    if fault == "missing-index":
        url = remotes[names.index("gs")][0]
        _drop(f"{url}/index.json", env, s3_server)
        expected, named = "IndexNotFound", f"{url}/index.json"
    elif fault == "missing-shard":
        url, source = remotes[names.index("s3")]
        shard = sorted(p.name for p in source.glob("shard.*"))[1]
        _drop(f"{url}/{shard}", env, s3_server)
        expected, named = "ObjectNotFound", f"{url}/{shard}"
    else:
        url = remotes[names.index("azure")][0]
        env = {**env, "AZURE_STORAGE_CONNECTION_STRING": _wrong_key(env["AZURE_STORAGE_CONNECTION_STRING"])}
        expected, named = "PermissionDenied", f"{url}/index.json"
    weights: list[dict[str, Any]] = [{} for _ in STORES]
    dataset = {
        "batch_size": 6,
        "shuffle": True,
        "shuffle_seed": 3,
        "streams": streams_under(remotes, weights, tmp_path / "cache"),
    }
    request = {
        "num_workers": workers,
        "context": context,
        "phase": "full",
        "epochs": 1,
        "catch": True,
        "dataset": dataset,
    }
    results = run_ranks(tmp_path, "fail", request, env, 300)  # a rank that hangs fails here, after 300 s
    errors = [r.get("error") for r in results]
    # Both ranks read every stream's index; a shard is read by one rank or both (both, with this seed).
    for rank, error in enumerate(errors):
        assert error is not None, f"rank {rank} finished: {fault} went unnoticed"
        assert expected in error["types"] and "StorageError" in error["types"], error
        assert named in error["message"], error
