"""The package's import contract and command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import astreaming
from astreaming.cli.main import main


def test_import_pulls_in_neither_torch_nor_cloud_sdks() -> None:
    code = (
        "import sys, astreaming, astreaming.errors\n"
        "heavy = [m for m in ('torch', 'aiobotocore', 'gcloud', 'azure', 'aiohttp') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_reading_an_uncompressed_dataset_imports_no_codec(tmp_path: Path) -> None:
    """The codec libraries load on a compressed shard's first use only: ~2 MB of resident memory and
    ~12 ms of import in every process (each spawned DataLoader worker too) that would buy nothing here."""
    code = (
        "import sys\n"
        "from astreaming import MDSWriter, StreamingDataset\n"
        f"out = {str(tmp_path / 'ds')!r}\n"
        "with MDSWriter(out=out, columns={'x': 'int'}) as w:\n"
        "    for i in range(10): w.write({'x': i})\n"
        "ds = StreamingDataset(local=out, batch_size=2, shuffle=False)\n"
        "assert [s['x'] for s in ds] == list(range(10))\n"
        "print(','.join(m for m in ('zstandard', 'brotli', 'cramjam') if m in sys.modules))\n"
        "with MDSWriter(out=out + '-z', columns={'x': 'int'}, compression='zstd') as w:\n"
        "    w.write({'x': 1})\n"
        "print(','.join(m for m in ('zstandard', 'brotli', 'cramjam') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", "zstandard"]  # none after the plain read; zstd once written


#: A script's head: ``report()`` (defined by the script) is what a process imported, and the collate
#: function makes each DataLoader worker report its own.
_WALK_HEAD = """
import json, sys
from astreaming import MDSWriter, StreamingDataLoader, StreamingDataset


def collate(batch):  # runs in the DataLoader worker: what that process imported to read its shards
    return [s["x"] for s in batch], report()
"""

#: A script's tail: walks ``ds`` with ``workers`` (0, or a DataLoader's) and prints every sample's ``x``
#: and every module reported by any process.
_WALK_TAIL = """
    seen, imported = [], set(report())
    if workers == "0":
        seen.extend(sample["x"] for sample in ds)
    else:
        loader = StreamingDataLoader(
            ds, batch_size=4, num_workers=int(workers), multiprocessing_context=method, collate_fn=collate
        )
        for xs, names in loader:
            seen.extend(xs)
            imported.update(names)
    imported.update(report())
    print(json.dumps([sorted(seen), sorted(imported)]))
"""

_SHARED_FS_READER = (
    _WALK_HEAD
    + """
CLIENTS = {"aiohttp", "aiobotocore", "botocore", "gcloud", "azure", "yarl"}


def report():
    return sorted(CLIENTS & {m.split(".")[0] for m in sys.modules})


if __name__ == "__main__":
    remote, cache, workers, method, limit = sys.argv[1:6]
    with MDSWriter(out=remote, columns={"x": "int"}, size_limit=200) as writer:
        for i in range(60):
            writer.write({"x": i})
    ds = StreamingDataset(remote=remote, local=cache, batch_size=4, cache_limit=limit or None)
"""
    + _WALK_TAIL
)


@pytest.mark.parametrize(
    ("workers", "method", "limit"),
    [("0", "", ""), ("0", "", "64kb"), ("2", "fork", ""), ("2", "spawn", "64kb")],
)
def test_a_remote_on_a_shared_filesystem_imports_no_http_client(
    tmp_path: Path, workers: str, method: str, limit: str
) -> None:
    """``remote`` a path (NFS, Lustre): every shard is copied into ``local``, and no process imports an
    HTTP client (aiohttp alone took ~0.2 s of the loop thread's GIL and ~8 MB at construction)."""
    script = tmp_path / "reader.py"
    script.write_text(_SHARED_FS_READER)
    remote, cache = tmp_path / "shared", tmp_path / "cache"
    args = [str(remote), str(cache), workers, method, limit]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    seen, imported = json.loads(out.stdout.splitlines()[-1])
    assert seen == list(range(60))
    assert imported == []
    assert sorted(p.name for p in cache.glob("*.mds")), "nothing was copied from the remote"


_LOCAL_WALKER = (
    _WALK_HEAD
    + """
def report():
    return sorted(m for m in sys.modules if m.startswith("astreaming."))


if __name__ == "__main__":
    out, workers, method, shuffle, limit = sys.argv[1:6]
    with MDSWriter(out=out, columns={"x": "int", "b": "bytes"}, size_limit=300) as writer:
        for i in range(80):
            writer.write({"x": i, "b": bytes([i]) * 20})
    if limit:  # the shards copied from ``out`` as a remote into a cache under a limit
        ds = StreamingDataset(
            remote=out, local=out + "-cache", batch_size=4, shuffle=shuffle == "1", cache_limit=limit
        )
    else:
        ds = StreamingDataset(local=out, batch_size=4, shuffle=shuffle == "1")
"""
    + _WALK_TAIL
)

#: Modules a walk loads only when its options or columns use them.
_ON_USE = {
    "shuffle": {f"astreaming.order.shuffle.{algo}" for algo in ("naive", "py1s", "py2s", "py1br", "py1e")}
    | {"astreaming.order.perm", "astreaming.order.shuffle.py1e_lazy"},
    "batching": {
        f"astreaming.order.batching.{name}"
        for name in ("stratified", "per_stream", "device_per_stream", "worker_sources", "stream_source")
    },
    "columns": {"astreaming.format.mds.encodings_image", "astreaming.format.mds.encodings_ndarray"},
}


@pytest.mark.parametrize(
    ("workers", "method", "shuffle", "limit"),
    [
        *[(w, m, s, "") for w, m in [("0", ""), ("2", "fork"), ("2", "spawn")] for s in ("0", "1")],
        ("0", "", "1", "9kb"),
        ("2", "fork", "1", "9kb"),
        ("2", "spawn", "0", "9kb"),
    ],
)
def test_a_walk_imports_only_the_order_and_encodings_it_uses(
    tmp_path: Path, workers: str, method: str, shuffle: str, limit: str
) -> None:
    """A walk of int and bytes columns imports no image or array encoding and no batching method but
    ``random``; unshuffled, no shuffle algorithm; shuffled, ``py1e`` (the default) and no other. The
    same from a remote under a ``cache_limit`` (every sample still read once)."""
    script = tmp_path / "walker.py"
    script.write_text(_LOCAL_WALKER)
    args = [str(tmp_path / "ds"), workers, method, shuffle, limit]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    seen, imported = json.loads(out.stdout.splitlines()[-1])
    assert seen == list(range(80))
    used = {"astreaming.order.shuffle.py1e", "astreaming.order.perm", "astreaming.order.shuffle.py1e_lazy"}
    expected_shuffle = used if shuffle == "1" else set()
    assert set(imported) & _ON_USE["shuffle"] == expected_shuffle
    assert set(imported) & (_ON_USE["batching"] | _ON_USE["columns"]) == set()


def test_lazy_package_names_resolve_and_list() -> None:
    """``astreaming.order`` and ``astreaming.storage`` resolve their public names on first use."""
    code = (
        "import sys, astreaming.order as order, astreaming.storage as storage\n"
        "before = 'astreaming.order.shuffle' in sys.modules, 'astreaming.storage.retry' in sys.modules\n"
        "assert order.get_shuffle.__module__ == 'astreaming.order.shuffle'\n"
        "assert storage.RetryPolicy.__module__ == 'astreaming.storage.retry'\n"
        "assert 'World' in dir(order) and 'backend_for' in dir(storage)\n"
        "assert sorted(order.__all__) == sorted(order._EXPORTS)\n"
        "assert sorted(storage.__all__) == sorted(storage._EXPORTS)\n"
        "import importlib\n"
        "for table in (order._EXPORTS, storage._EXPORTS):\n"
        "    for name, source in table.items():\n"
        "        assert name in importlib.import_module(source).__all__, (name, source)\n"
        "print(before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(False, False)"
    with pytest.raises(AttributeError, match="no_such_name"):
        import astreaming.order

        astreaming.order.no_such_name  # noqa: B018


def test_unknown_public_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        astreaming.no_such_name  # noqa: B018


def test_errors_keep_builtin_bases() -> None:
    assert issubclass(astreaming.ConfigError, ValueError)
    assert issubclass(astreaming.FormatError, ValueError)
    assert issubclass(astreaming.UnknownOptionError, KeyError)
    assert str(astreaming.UnknownOptionError("bad algo 'x'")) == "bad algo 'x'"


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "astreaming" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
