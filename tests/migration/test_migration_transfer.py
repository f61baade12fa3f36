"""Upload/download helpers of conversion scripts, against fake-gcs-server and moto (read back out of band)."""

from __future__ import annotations

import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from astreaming import ObjectNotFound, download_file, list_objects, upload
from astreaming.compat import CloudUploader
from astreaming.compat import download_file as mosaic_download_file
from astreaming.testing.servers import FakeGCSServer, MotoS3Server

from .conftest import BUCKET

Getter = Callable[[str], bytes]


def gcs_get(server: FakeGCSServer) -> Getter:
    def get(key: str) -> bytes:
        name = urllib.parse.quote(key, safe="")
        with urllib.request.urlopen(
            f"{server.url}/storage/v1/b/{BUCKET}/o/{name}?alt=media", timeout=30
        ) as r:
            data: bytes = r.read()
            return data

    return get


def s3_get(server: MotoS3Server) -> Getter:
    def get(key: str) -> bytes:
        client = server.client()
        try:
            data: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            return data
        finally:
            client.close()

    return get


@pytest.fixture(params=["gs", "s3"])
def cloud(request: pytest.FixtureRequest) -> tuple[str, Getter]:
    """``(root URL, out-of-band getter of a key)`` for a fresh prefix in each emulated cloud."""
    prefix = uuid.uuid4().hex[:10]
    if request.param == "gs":
        server: FakeGCSServer = request.getfixturevalue("gs_env")
        return f"gs://{BUCKET}/{prefix}", lambda key: gcs_get(server)(f"{prefix}/{key}")
    s3: MotoS3Server = request.getfixturevalue("s3_env")
    return f"s3://{BUCKET}/{prefix}", lambda key: s3_get(s3)(f"{prefix}/{key}")


def test_upload_a_file_and_a_directory_then_download(cloud: tuple[str, Getter], tmp_path: Path) -> None:
    root, get = cloud
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(b"A" * 1000)
    (tree / "sub" / "b.txt").write_bytes(b"bee")
    single = tmp_path / "one.bin"
    single.write_bytes(bytes(range(256)))
    assert upload(single, f"{root}/single/one.bin") == [f"{root}/single/one.bin"]
    assert sorted(upload(tree, f"{root}/tree")) == [f"{root}/tree/a.bin", f"{root}/tree/sub/b.txt"]
    assert get("single/one.bin") == bytes(range(256))
    assert get("tree/a.bin") == b"A" * 1000 and get("tree/sub/b.txt") == b"bee"
    assert list_objects(f"{root}/tree/") == [f"{root}/tree/a.bin", f"{root}/tree/sub/b.txt"]
    dest = download_file(f"{root}/tree/sub/b.txt", tmp_path / "down" / "b.txt", 30)
    assert dest.read_bytes() == b"bee"
    assert [p.name for p in (tmp_path / "down").iterdir()] == ["b.txt"]  # no partial file left


def test_download_of_a_missing_object_is_file_not_found(cloud: tuple[str, Getter], tmp_path: Path) -> None:
    root, _ = cloud
    for kind in (FileNotFoundError, ObjectNotFound):
        with pytest.raises(kind):
            mosaic_download_file(f"{root}/nope.bin", str(tmp_path / "nope.bin"), 30)
    assert not (tmp_path / "nope.bin").exists()


def test_cloud_uploader_as_conversion_scripts_use_it(cloud: tuple[str, Getter], tmp_path: Path) -> None:
    root, get = cloud
    uploader = CloudUploader.get(f"{root}/conv", keep_local=False)
    local = Path(uploader.local)
    (local / "shard.00000.mds").write_bytes(b"shard bytes")
    uploader.upload_file("shard.00000.mds")
    assert get("conv/shard.00000.mds") == b"shard bytes"
    assert not (local / "shard.00000.mds").exists()  # keep_local=False removes it once uploaded
    assert uploader.list_objects() == [f"{root}/conv/shard.00000.mds"]
    kept = CloudUploader.get((str(tmp_path / "kept"), f"{root}/kept"), keep_local=True)
    (tmp_path / "kept" / "index.json").write_text("{}")
    kept.upload_file("index.json")
    assert get("kept/index.json") == b"{}" and (tmp_path / "kept" / "index.json").exists()
    with pytest.raises(FileExistsError):
        CloudUploader.get((str(tmp_path / "kept"), f"{root}/kept"))  # non-empty local, exist_ok=False
