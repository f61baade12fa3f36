"""merge_index with remote partitions and remote output, checked against mosaic's golden ``merged`` bytes.

The golden dataset (``tests/golden/output/merged``) holds two partitions written by mosaic 0.13.0 and the
``index.json`` its merge_index produced; merging the partitions from remote storage must reproduce that
index byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from output_remotes import Remote

from astreaming.errors import ConfigError, FormatError
from astreaming.format.local import LocalDataset
from astreaming.output import merge_index

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "output" / "merged"
DATA = GOLDEN / "data"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


def golden_index() -> bytes:
    data = (DATA / "index.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == EXPECTED["files"]["index.json"]["sha256"]
    return data


def upload_partitions(remote: Remote) -> None:
    """Seed the golden partitions (not the merged index) out of band."""
    for path in sorted(DATA.rglob("*")):
        rel = path.relative_to(DATA).as_posix()
        if path.is_file() and rel != "index.json":
            remote.put(rel, path.read_bytes())


def check_readable(remote: Remote, tmp_path: Path) -> None:
    ds = LocalDataset(remote.download(tmp_path / "copy"))
    assert [ds[i]["id"] for i in range(len(ds))] == [s["id"]["v"] for s in EXPECTED["decoded"]]


def test_list_form_reproduces_golden_bytes(bare: Remote, tmp_path: Path) -> None:
    upload_partitions(bare)
    merge_index([f"{bare.url}/0/index.json", f"{bare.url}/1/index.json"], bare.url, backend=bare.backend())
    assert bare.get("index.json") == golden_index()
    assert bare.get("0/index.json") == (DATA / "0" / "index.json").read_bytes()  # partitions stay
    check_readable(bare, tmp_path)


def test_root_form_lists_the_remote(bare: Remote, tmp_path: Path) -> None:
    upload_partitions(bare)
    bare.put("index.json", b"stale: the root's own index is not a partition")
    merge_index(bare.url, keep_local=False, download_timeout=30, backend=bare.backend())
    assert bare.get("index.json") == golden_index()
    check_readable(bare, tmp_path)


def test_partition_directories_and_keyword_form(bare: Remote) -> None:
    upload_partitions(bare)
    merge_index(
        index_file_urls=[f"{bare.url}/0", f"{bare.url}/1/"], out=bare.url + "/", backend=bare.backend()
    )
    assert bare.get("index.json") == golden_index()


@pytest.mark.parametrize("keep_local", [True, False])
def test_tuple_out(bare: Remote, tmp_path: Path, keep_local: bool) -> None:
    upload_partitions(bare)
    local = tmp_path / "local"
    merge_index(
        [f"{bare.url}/0/index.json", f"{bare.url}/1/index.json"],
        (str(local), bare.url),
        keep_local,
        backend=bare.backend(),
    )
    assert bare.get("index.json") == golden_index()
    assert (local / "index.json").exists() == keep_local
    if keep_local:
        assert (local / "index.json").read_bytes() == golden_index()


def test_local_partitions_remote_out(bare: Remote, tmp_path: Path) -> None:
    """Partitions written locally, (local, remote) pairs: the local copies are read, the result uploaded."""
    local = tmp_path / "local"
    shutil.copytree(DATA, local)
    (local / "index.json").unlink()
    upload_partitions(bare)
    bare_url = bare.url
    pairs = [(str(local / p / "index.json"), f"{bare_url}/{p}/index.json") for p in ("0", "1")]
    merge_index(pairs, (str(local), bare_url), backend=bare.backend())
    assert bare.get("index.json") == golden_index()
    assert (local / "index.json").read_bytes() == golden_index()
    # The tuple root form prefers the local twins as well.
    (local / "1" / "index.json").write_text("corrupt local copy")
    with pytest.raises(FormatError, match=r"local/1/index\.json"):
        merge_index((str(local), bare_url), backend=bare.backend())


def test_remote_pairs_when_local_copies_are_missing(bare: Remote, tmp_path: Path) -> None:
    upload_partitions(bare)
    missing = tmp_path / "nowhere"
    pairs = [(str(missing / p / "index.json"), f"{bare.url}/{p}/index.json") for p in ("0", "1")]
    merge_index(pairs, bare.url, backend=bare.backend())
    assert bare.get("index.json") == golden_index()


def test_errors_name_the_url(bare: Remote) -> None:
    upload_partitions(bare)
    with pytest.raises(FormatError, match=r"2/index\.json: partition index not found"):
        merge_index(
            [f"{bare.url}/0/index.json", f"{bare.url}/2/index.json"], bare.url, backend=bare.backend()
        )
    bare.put("3/index.json", b'{"version": 3, "shards": []}')
    with pytest.raises(FormatError, match=r"3/index\.json"):
        merge_index([f"{bare.url}/3/index.json"], bare.url, backend=bare.backend())
    with pytest.raises(ConfigError, match="not inside out"):
        merge_index([f"{bare.url}/0/index.json"], bare.url + "/elsewhere", backend=bare.backend())
    with pytest.raises(ConfigError, match=r"no partition index\.json found"):
        merge_index(bare.url + "/empty", backend=bare.backend())
    with pytest.raises(ConfigError, match="unknown argument 'bogus'"):
        merge_index(bare.url, bogus=1, backend=bare.backend())
    with pytest.raises(ConfigError, match="download_timeout"):
        merge_index(bare.url, download_timeout=0, backend=bare.backend())
    assert "index.json" not in bare.listing()  # nothing was published by the failed calls


def test_unsafe_partition_keys_are_refused(bare: Remote) -> None:
    upload_partitions(bare)
    with pytest.raises(FormatError, match="unsafe"):
        merge_index([f"{bare.url}/0/../1/index.json"], bare.url, backend=bare.backend())


def test_local_only_calls_use_the_format_implementation(tmp_path: Path) -> None:
    local = tmp_path / "data"
    shutil.copytree(DATA, local)
    (local / "index.json").unlink()
    merge_index([str(local / "0" / "index.json"), str(local / "1" / "index.json")], str(local))
    assert (local / "index.json").read_bytes() == golden_index()
