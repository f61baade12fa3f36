"""Each typed error is also the builtin mosaic raised in the same situation: both ``except`` clauses work."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest

from astreaming import (
    FormatError,
    MDSWriter,
    ObjectNotFound,
    PermissionDenied,
    Stream,
    StreamingDataset,
)
from astreaming.compat import Int, Str, mds_encode
from astreaming.testing.servers import FakeGCSServer

from .conftest import BUCKET, MakeDataset


def both(builtin: type[BaseException], typed: type[BaseException], make: object) -> None:
    """``make()`` raises something caught by ``except builtin`` and by ``except typed``."""
    for kind in (builtin, typed):
        with pytest.raises(kind) as caught:
            make()  # type: ignore[operator]
        assert isinstance(caught.value, builtin) and isinstance(caught.value, typed)


def test_remote_without_index_is_file_not_found(gs_env: FakeGCSServer, tmp_path: Path) -> None:
    remote = f"gs://{BUCKET}/{uuid.uuid4().hex}/missing"
    both(
        FileNotFoundError, ObjectNotFound, lambda: StreamingDataset(remote=remote, local=str(tmp_path / "c"))
    )
    with pytest.raises(ObjectNotFound, match=r"index\.json"):
        StreamingDataset(remote=remote, local=str(tmp_path / "c"))


def test_local_only_stream_without_index_is_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    make = lambda: StreamingDataset(streams=[Stream(local=str(tmp_path / "empty"))])  # noqa: E731
    both(RuntimeError, ObjectNotFound, make)
    both(FileNotFoundError, ObjectNotFound, make)


def test_empty_local_index_is_json_decode_error(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "index.json").write_text("")
    make = lambda: StreamingDataset(local=str(tmp_path / "ds"))  # noqa: E731
    both(json.JSONDecodeError, FormatError, make)
    with pytest.raises(FormatError, match=r"ds/index\.json"):
        make()


def test_index_without_shards_is_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "index.json").write_text('{"version": 2, "shards": []}')
    both(RuntimeError, FormatError, lambda: StreamingDataset(local=str(tmp_path / "ds")))


@pytest.mark.parametrize(("column", "value"), [("int", "7"), ("int", 1.5), ("str", 7), ("str", None)])
def test_wrong_value_type_is_type_and_attribute_error(column: str, value: object, tmp_path: Path) -> None:
    def write() -> None:
        with MDSWriter(out=str(tmp_path / uuid.uuid4().hex), columns={"x": column}) as writer:
            writer.write({"x": value})

    both(TypeError, FormatError, write)
    both(AttributeError, FormatError, write)


def test_encoding_classes_refuse_bytes_like_mosaics(make_dataset: MakeDataset) -> None:
    both(TypeError, FormatError, lambda: Int().encode(b"\x00" * 8))
    both(AttributeError, FormatError, lambda: Str().encode(b"abc"))
    assert Int().decode(Int().encode(5)) == 5
    assert mds_encode("int", b"\x01" * 8) == b"\x01" * 8  # the module function passes bytes through


def test_typed_errors_survive_pickling_with_both_identities() -> None:
    # Errors cross from DataLoader workers to the main process by pickling.
    for err in (ObjectNotFound("gone", url="gs://b/k"), PermissionDenied("no", url="s3://b/k")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.url == err.url
    assert isinstance(PermissionDenied("no"), PermissionError)
