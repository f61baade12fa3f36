"""``backend=`` on the writers, the uploader, merge_index and the transfer helpers: a backend injected the
way httpx takes a ``transport``, for a scheme no registry knows; the receiver owns it and closes it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from output_fakes import Script, ScriptedBackend
from test_output_merge import DATA, golden_index

from astreaming import download_file, list_objects, upload
from astreaming.compat import download_file as mosaic_download_file
from astreaming.errors import ConfigError, PermissionDenied, UnknownOptionError
from astreaming.format.local import LocalDataset
from astreaming.format.writer import OutputExistsError
from astreaming.output import JSONWriter, MDSWriter, RemoteUploader, merge_index
from astreaming.storage import backend_for, supported_schemes

COLUMNS = {"id": "int", "text": "str"}


def sample(i: int) -> dict[str, Any]:
    return {"id": i, "text": f"row {i}"}


def test_no_registry_knows_the_scripted_scheme() -> None:
    # The output tests inject their backend; nothing registers `scripted` globally any more.
    assert "scripted" not in supported_schemes()
    with pytest.raises(UnknownOptionError, match="scripted"):
        backend_for("scripted:///anywhere")


@pytest.mark.parametrize("cls", [MDSWriter, JSONWriter])
def test_writer_uploads_through_the_injected_backend_and_closes_it(
    script: Script, tmp_path: Path, cls: type[MDSWriter]
) -> None:
    backend = script.backend()
    with cls(out=f"scripted://{tmp_path}/r", columns=COLUMNS, size_limit=200, backend=backend) as w:
        for i in range(30):
            w.write(sample(i))
    ended = [name for what, name, _ in script.events if what == "end"]
    assert sorted(ended) == sorted(p.name for p in (tmp_path / "r").iterdir())
    assert ended[-1] == "index.json" and len(w.shards) > 3
    assert backend.opened == 1 and backend.closed
    ds = LocalDataset(tmp_path / "r")
    assert [ds[i]["id"] for i in range(len(ds))] == list(range(30))


def test_writer_closes_the_injected_backend_when_abandoned_or_refused(script: Script, tmp_path: Path) -> None:
    abandoned = script.backend()
    w = MDSWriter(out=f"scripted://{tmp_path}/r", columns=COLUMNS, backend=abandoned)
    with pytest.raises(RuntimeError, match="boom"), w:
        w.write(sample(0))
        raise RuntimeError("boom")
    assert abandoned.closed and not (tmp_path / "r" / "index.json").exists()
    # A non-empty remote is refused up front; the backend that listed it is closed all the same.
    (tmp_path / "r").mkdir(exist_ok=True)
    (tmp_path / "r" / "old.mds").write_bytes(b"x")
    refused = script.backend()
    with pytest.raises(OutputExistsError, match="not empty"):
        MDSWriter(out=f"scripted://{tmp_path}/r", columns=COLUMNS, backend=refused)
    assert refused.opened == 1 and refused.closed
    # A failed upload: typed error, no index, backend closed.
    script.fail["shard.00000.mds"] = lambda url: PermissionDenied(f"{url}: denied", url=url)
    failed = script.backend()
    with (
        pytest.raises(PermissionDenied, match=r"shard\.00000\.mds"),
        MDSWriter(out=f"scripted://{tmp_path}/f", columns=COLUMNS, backend=failed) as w,
    ):
        w.write(sample(0))
    assert failed.closed and not (tmp_path / "f" / "index.json").exists()


def test_tuple_out_with_an_injected_backend(script: Script, tmp_path: Path) -> None:
    local = tmp_path / "local"
    backend = script.backend()
    with MDSWriter(
        out=(str(local), f"scripted://{tmp_path}/r"), columns=COLUMNS, keep_local=True, backend=backend
    ) as w:
        for i in range(5):
            w.write(sample(i))
    assert (tmp_path / "r" / "index.json").read_bytes() == (local / "index.json").read_bytes()
    assert backend.closed


def test_bad_backend_arguments_are_refused(script: Script, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backend: given, but out=.* is local"):
        MDSWriter(out=str(tmp_path / "plain"), columns=COLUMNS, backend=script.backend())
    with pytest.raises(ConfigError, match="backend: given"):
        MDSWriter(out=f"file://{tmp_path}/viafile", columns=COLUMNS, backend=script.backend())
    assert not (tmp_path / "plain").exists() and not (tmp_path / "viafile").exists()
    # A class (or a factory, as Stream takes) is not an instance: named, not called.
    with pytest.raises(ConfigError, match=r"backend: expected an astreaming\.storage\.Backend instance"):
        MDSWriter(out=f"scripted://{tmp_path}/r", columns=COLUMNS, backend=ScriptedBackend)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backend: expected"):
        RemoteUploader(f"scripted://{tmp_path}/r", tmp_path, backend=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backend: expected"):
        merge_index(f"scripted://{tmp_path}/r", backend="scripted")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backend given, but out and every partition are local"):
        merge_index(str(tmp_path), backend=script.backend())


def put_partitions(root: Path) -> None:
    shutil.copytree(DATA, root)
    (root / "index.json").unlink()


def test_merge_remote_partitions_into_a_local_out(script: Script, tmp_path: Path) -> None:
    # (local, remote) pairs whose local copies are missing: the URLs are read through the injected
    # backend, and the merged index is written to the local out only.
    put_partitions(tmp_path / "r")
    out = tmp_path / "out"
    pairs = [(str(out / p / "index.json"), f"scripted://{tmp_path}/r/{p}/index.json") for p in ("0", "1")]
    backend = script.backend()
    merge_index(pairs, str(out), backend=backend)
    assert (out / "index.json").read_bytes() == golden_index()
    assert backend.opened == 1 and backend.closed
    assert not script.events  # nothing was uploaded: out is local


def test_merge_closes_the_injected_backend_on_failure(script: Script, tmp_path: Path) -> None:
    put_partitions(tmp_path / "r")
    backend = script.backend()
    with pytest.raises(ConfigError, match="not inside out"):
        merge_index(
            [f"scripted://{tmp_path}/r/0/index.json"], f"scripted://{tmp_path}/elsewhere", backend=backend
        )
    assert backend.closed


def test_transfer_helpers_take_a_backend(script: Script, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"alpha")
    (tree / "sub" / "b.txt").write_bytes(b"beta")
    root = f"scripted://{tmp_path}/remote"
    made = [script.backend() for _ in range(4)]
    written = upload(tree, root, backend=made[0])
    assert written == [f"{root}/a.txt", f"{root}/sub/b.txt"]
    assert [name for what, name, _ in script.events if what == "end"] == ["a.txt", "b.txt"]
    assert list_objects(root + "/", backend=made[1]) == written
    got = download_file(f"{root}/sub/b.txt", tmp_path / "dl" / "b.txt", backend=made[2])
    assert got.read_bytes() == b"beta"
    got = mosaic_download_file(f"{root}/a.txt", str(tmp_path / "dl" / "a.txt"), 30, backend=made[3])
    assert got.read_bytes() == b"alpha"
    assert all(b.opened == 1 and b.closed for b in made)
    with pytest.raises(ConfigError, match="backend: expected"):
        upload(tree, root, backend=ScriptedBackend)  # type: ignore[arg-type]
