"""Fuzz suite (issue 10): mutated ``index.json`` files and shard bytes only ever raise
:class:`~astreaming.errors.AstreamingError` subclasses, never hang (pytest-timeout bounds every test),
never read outside the shard and never write outside the cache.

Sized by ``ASTREAMING_FUZZ_EXAMPLES`` (examples per test): 100 per test (400 cases) in the default run,
5,000 per test in the nightly-size ``nox -s fuzz``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astreaming import CSVWriter, JSONWriter, LocalDataset, MDSWriter, StreamingDataset
from astreaming.errors import AstreamingError

EXAMPLES = int(os.environ.get("ASTREAMING_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no wall-clock limit per example: the suite must hold on a loaded machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
COLUMNS = {
    "id": "int",
    "name": "str",
    "blob": "bytes",
    "vec": "ndarray:float32",
    "js": "json",
    "f": "float64",
}


def _write(out: Path, compression: str | None) -> Path:
    with MDSWriter(out=str(out), columns=COLUMNS, compression=compression, size_limit=400) as writer:
        for i in range(12):
            writer.write(
                {
                    "id": i,
                    "name": "n" * (i % 5),
                    "blob": bytes([i]) * (i % 3),
                    "vec": np.arange(1 + i % 4, dtype=np.float32),
                    "js": {"k": [i, None]},
                    "f": i / 3,
                }
            )
    return out


def _write_text(out: Path, writer_class: Any) -> Path:
    with writer_class(out=str(out), columns={"id": "int", "name": "str", "x": "float"}, size_limit=300) as w:
        for i in range(12):
            w.write({"id": i, "name": "n'" * (i % 3), "x": i / 7})
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzzbase")
    return {
        "plain": _write(root / "plain", None),
        "zstd": _write(root / "zstd", "zstd"),
        "jsonl": _write_text(root / "jsonl", JSONWriter),
        "csv": _write_text(root / "csv", CSVWriter),
    }


def _snapshot(root: Path, skip: Path) -> dict[str, int]:
    """Every file under ``root`` outside ``skip``, with its size."""
    return {
        str(p): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not p.is_relative_to(skip) and not p.is_symlink()
    }


def _consume(make: Any) -> None:
    """Build and read a dataset completely; only AstreamingError may come out."""
    try:
        ds = make()
        if isinstance(ds, StreamingDataset):
            with ds:
                for _ in ds:
                    pass
        else:
            for i in range(len(ds)):
                ds[i]
    except AstreamingError:
        pass  # the contract under test: bad input may fail, but only with astreaming's typed errors


@contextlib.contextmanager
def _sandbox() -> Iterator[Path]:
    """A fresh directory per example (hypothesis runs many examples in one test call)."""
    with tempfile.TemporaryDirectory(prefix="astreaming-fuzz-") as root:
        yield Path(root)


# -- index.json ----------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        ["", "..", "../x", "/etc/passwd", "a/../../b", "shard.00000.mds", "zstd", "mds", "x\x00"]
    )
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutate(data: st.DataObject, obj: Any, depth: int = 0) -> Any:
    """Replace, delete or recurse into one part of ``obj`` (a decoded index)."""
    if isinstance(obj, dict) and obj and depth < 6:
        key = data.draw(st.sampled_from(sorted(obj)))
        action = data.draw(st.sampled_from(["recurse", "replace", "delete"]))
        out = dict(obj)
        if action == "delete":
            del out[key]
        elif action == "replace":
            out[key] = data.draw(json_values)
        else:
            out[key] = _mutate(data, obj[key], depth + 1)
        return out
    if isinstance(obj, list) and obj and depth < 6:
        i = data.draw(st.integers(0, len(obj) - 1))
        out_list = list(obj)
        out_list[i] = _mutate(data, obj[i], depth + 1)
        return out_list
    return data.draw(json_values)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["plain", "zstd", "jsonl", "csv"]), remote=st.booleans())
def test_mutated_index(base: dict[str, Path], data: st.DataObject, kind: str, remote: bool) -> None:
    with _sandbox() as sandbox:
        ds_dir = sandbox / "ds"
        cache = sandbox / "cache"
        shutil.copytree(base[kind], ds_dir)
        index = json.loads((ds_dir / "index.json").read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            index = _mutate(data, index)
        (ds_dir / "index.json").write_text(json.dumps(index))
        before = _snapshot(sandbox, cache)
        if remote:
            _consume(
                lambda: StreamingDataset(remote=str(ds_dir), local=str(cache), batch_size=1, download_retry=0)
            )
        else:
            _consume(lambda: StreamingDataset(local=str(ds_dir), batch_size=1))
            _consume(lambda: LocalDataset(str(ds_dir)))
        after = _snapshot(sandbox, cache)
        # Only the cache may gain files (a local-only dataset may gain its decompressed shards).
        grown = {p for p in after if p not in before}
        assert all(Path(p).is_relative_to(ds_dir) and not remote for p in grown), grown
        assert {p: s for p, s in after.items() if p in before} == before


@FUZZ
@given(raw=st.binary(max_size=2048) | st.text(max_size=200).map(str.encode))
def test_arbitrary_index_bytes(raw: bytes) -> None:
    with _sandbox() as sandbox:
        (sandbox / "index.json").write_bytes(raw)
        _consume(lambda: StreamingDataset(local=str(sandbox), batch_size=1))


# -- shard bytes ---------------------------------------------------------------------------------------


@st.composite
def shard_edits(draw: st.DrawFn, size: int) -> list[tuple[str, int, bytes]]:
    """A few edits of a file of ``size`` bytes: overwrite at an offset, truncate, or append."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["overwrite", "overwrite", "overwrite", "truncate", "append"]))
        at = draw(st.integers(0, max(0, size - 1)) | st.integers(0, 16))
        edits.append((kind, at, draw(st.binary(min_size=1, max_size=16))))
    return edits


def _apply(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, at, chunk in edits:
        if kind == "overwrite":
            buf[at : at + len(chunk)] = chunk[: max(0, len(buf) - at)] or chunk[:0]
        elif kind == "truncate":
            del buf[at:]
        else:
            buf += chunk
    return bytes(buf)


@FUZZ
@given(
    data=st.data(),
    kind=st.sampled_from(["plain", "plain", "jsonl", "csv"]),
    shard=st.integers(0, 2),
    part=st.sampled_from(["raw_data", "raw_meta"]),
    keep_size=st.booleans(),
)
def test_mutated_shard_bytes(
    base: dict[str, Path], data: st.DataObject, kind: str, shard: int, part: str, keep_size: bool
) -> None:
    with _sandbox() as sandbox:
        ds_dir = sandbox / "ds"
        shutil.copytree(base[kind], ds_dir)
        index = json.loads((ds_dir / "index.json").read_text())
        entry = index["shards"][shard % len(index["shards"])]
        key = part if part in entry else "raw_data"  # MDS shards have no meta file
        path = ds_dir / entry[key]["basename"]
        mutated = _apply(path.read_bytes(), data.draw(shard_edits(path.stat().st_size)))
        path.write_bytes(mutated)
        if keep_size:  # the index agrees with the new size: the bytes themselves get decoded
            entry[key]["bytes"] = len(mutated)
            (ds_dir / "index.json").write_text(json.dumps(index))
        before = _snapshot(sandbox, ds_dir)
        _consume(lambda: StreamingDataset(local=str(ds_dir), batch_size=1))
        _consume(lambda: LocalDataset(str(ds_dir)))
        assert _snapshot(sandbox, ds_dir) == before


@FUZZ
@given(data=st.data())
def test_mutated_compressed_shard_bytes(base: dict[str, Path], data: st.DataObject) -> None:
    with _sandbox() as sandbox:
        ds_dir = sandbox / "ds"
        cache = sandbox / "cache"
        shutil.copytree(base["zstd"], ds_dir)
        index = json.loads((ds_dir / "index.json").read_text())
        entry = index["shards"][0]
        path = ds_dir / entry["zip_data"]["basename"]
        mutated = _apply(path.read_bytes(), data.draw(shard_edits(path.stat().st_size)))
        path.write_bytes(mutated)
        entry["zip_data"]["bytes"] = len(mutated)
        (ds_dir / "index.json").write_text(json.dumps(index))
        _consume(
            lambda: StreamingDataset(remote=str(ds_dir), local=str(cache), batch_size=1, download_retry=0)
        )
        # Whatever failed left no temp or partial file that a later run would trust.
        assert not [p for p in cache.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]
