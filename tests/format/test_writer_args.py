"""Writer arguments, size accounting (reference §1.8) and the no-index-on-exception fix (hazard 29)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astreaming.errors import ConfigError, FormatError
from astreaming.format.index import MDSEntry, load_index
from astreaming.format.jsonl import JSONWriter
from astreaming.format.mds.writer import MDSWriter
from astreaming.format.writer import MissingColumnError, OutputExistsError
from astreaming.format.xsv import CSVWriter, TSVWriter, XSVWriter

COLS = {"x": "int", "s": "str"}


@pytest.mark.parametrize(
    "writer",
    [
        lambda out, **kw: MDSWriter(out=out, columns=COLS, **kw),
        lambda out, **kw: JSONWriter(out=out, columns=COLS, **kw),
        lambda out, **kw: CSVWriter(out=out, columns=COLS, **kw),
        lambda out, **kw: TSVWriter(out=out, columns=COLS, **kw),
        lambda out, **kw: XSVWriter(out=out, columns=COLS, separator=";", **kw),
    ],
)
def test_common_arguments(writer: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown argument 'bogus'"):
        writer(str(tmp_path / "a"), bogus=1)
    for remote in ("s3://bucket/x", "gs://b/x", (str(tmp_path / "l"), "s3://b/x")):
        with pytest.raises(ConfigError, match="remote output is not supported yet"):
            writer(remote)
    with pytest.raises(ConfigError, match="size_limit"):
        writer(str(tmp_path / "b"), size_limit=1 << 32)
    with pytest.raises(ConfigError, match="size_limit"):
        writer(str(tmp_path / "b"), size_limit="5gb")
    with pytest.raises(ConfigError, match="size_limit"):
        writer(str(tmp_path / "b"), size_limit=-1)
    with pytest.raises(ConfigError, match="hashes"):
        writer(str(tmp_path / "b"), hashes=["xxh64", "sha1"])  # must be sorted
    with pytest.raises(ConfigError, match="compression"):
        writer(str(tmp_path / "b"), compression="zip")
    # The mosaic keyword options are accepted.
    w = writer(
        str(tmp_path / "c"), progress_bar=False, max_workers=2, retry=3, exist_ok=False, keep_local=True
    )
    w.write({"x": 1, "s": "a", "ignored": object()})  # keys outside `columns` are ignored, as in mosaic
    with pytest.raises(MissingColumnError, match="missing column 's'") as info:
        w.write({"x": 1})
    assert isinstance(info.value, KeyError)
    w.finish()
    w.finish()  # idempotent
    with pytest.raises(ConfigError, match="after finish"):
        w.write({"x": 2, "s": "b"})
    assert [e.samples for e in load_index(tmp_path / "c" / "index.json")] == [1]


def test_exist_ok(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    MDSWriter(out=str(out), columns=COLS).finish()  # an empty directory is fine
    (out / "shard.00007.mds").write_bytes(b"a shard of an earlier, failed run")
    with pytest.raises(OutputExistsError, match="not empty") as info:
        MDSWriter(out=str(out), columns=COLS)
    assert isinstance(info.value, FileExistsError)
    with MDSWriter(out=str(out), columns=COLS, exist_ok=True) as w:
        w.write({"x": 1, "s": "a"})
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard.00000.mds"]


def test_exception_in_with_body_publishes_no_index(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (
        pytest.raises(RuntimeError, match="boom"),
        MDSWriter(out=str(out), columns=COLS, size_limit=200) as w,
    ):
        for i in range(20):
            w.write({"x": i, "s": "y" * 20})
        raise RuntimeError("boom")
    assert not (out / "index.json").exists()
    assert (out / "shard.00000.mds").exists()  # shards flushed before the error may stay
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files either


def test_size_limit_forms(tmp_path: Path) -> None:
    samples = [{"x": i, "s": "z" * 100} for i in range(30)]

    def shards(**kw: Any) -> list[MDSEntry]:
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        with MDSWriter(out=str(out), columns=COLS, **kw) as w:
            for s in samples:
                w.write(s)
        entries = load_index(out / "index.json")
        assert all(isinstance(e, MDSEntry) for e in entries)
        return entries  # type: ignore[return-value]

    one = shards(size_limit=None)
    assert len(one) == 1 and one[0].size_limit is None
    zero = shards(size_limit=0)
    assert len(zero) == 1 and zero[0].size_limit is None
    kb = shards(size_limit="1kb")
    assert kb[0].size_limit == 1024 and len(kb) > 1
    assert [e.samples for e in kb] == [e.samples for e in shards(size_limit=1024)]
    assert shards()[0].size_limit == 1 << 26


def test_fixed_size_and_bad_values_raise_format_error(tmp_path: Path) -> None:
    w = MDSWriter(out=str(tmp_path / "o"), columns={"a": "ndarray:uint8:4", "b": "int"})
    with pytest.raises(FormatError, match="'a'"):
        w.write({"a": b"\x00\x01\x02", "b": 1})  # pre-encoded bytes are still length-checked
    with pytest.raises(FormatError):
        w.write({"a": b"\x00\x01\x02\x03", "b": "seven"})
    with pytest.raises(ConfigError, match="'bad'"):
        MDSWriter(out=str(tmp_path / "p"), columns={"bad": "float128"})
    with pytest.raises(ConfigError, match="columns"):
        MDSWriter(out=str(tmp_path / "q"), columns={})


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=40),
    limit=st.integers(1, 1500),
)
def test_size_accounting_is_greedy_and_bounded(sizes: list[int], limit: int, tmp_path_factory: Any) -> None:
    out = tmp_path_factory.mktemp("acct")
    with MDSWriter(out=str(out), columns={"b": "bytes"}, size_limit=limit, exist_ok=True) as w:
        for n in sizes:
            w.write({"b": b"q" * n})
    entries = load_index(out / "index.json")
    counts = [e.samples for e in entries]
    assert sum(counts) == len(sizes)
    header = 8 + len(
        json.dumps(
            {
                "column_encodings": ["bytes"],
                "column_names": ["b"],
                "column_sizes": [None],
                "compression": None,
                "format": "mds",
                "hashes": [],
                "size_limit": limit,
                "version": 2,
            },
            sort_keys=True,
        )
    )
    start = 0
    for k, (entry, count) in enumerate(zip(entries, counts, strict=True)):
        blob_sizes = [4 + n for n in sizes[start : start + count]]  # length word + payload
        assert entry.raw_data.bytes == header + sum(b + 4 for b in blob_sizes)
        if count >= 2:
            assert entry.raw_data.bytes <= limit  # only a lone oversized sample may exceed the limit
        if count == 0:
            assert k == 0  # a 0-sample shard only happens when the very first sample does not fit
        if k + 1 < len(entries):
            # Greedy: the next shard's first sample would not have fitted in this one.
            assert entry.raw_data.bytes + 4 + sizes[start + count] + 4 > limit
        start += count


def test_uploader_hook_receives_every_file_then_the_index(tmp_path: Path) -> None:
    calls: list[str] = []

    class Recorder:
        def upload(self, path: Path, basename: str) -> None:
            assert path.exists() and path.name == basename
            calls.append(basename)

        def finish(self) -> None:
            calls.append("<finish>")

    w = JSONWriter(out=str(tmp_path / "o"), columns={"a": "int"}, compression="zstd", size_limit=20)
    w.uploader = Recorder()
    with w:
        for i in range(3):
            w.write({"a": i})
    assert calls[-2:] == ["index.json", "<finish>"]
    assert sorted(calls[:-2]) == sorted(p.name for p in (tmp_path / "o").iterdir() if p.name != "index.json")
    assert all(c.endswith(".zstd") for c in calls[:-2]) and len(calls[:-2]) == 4  # 2 shards x (data, meta)


def test_mds_encode_errors_name_the_column_and_leave_the_writer_usable(tmp_path: Path) -> None:
    """The writer encodes in a fast loop and redoes a sample that fails there in the checked one: the
    error is the checked loop's (typed, naming the column), and nothing of the failed sample is kept."""
    columns = {"a": "int", "b": "str", "c": "float32"}
    with MDSWriter(out=str(tmp_path / "ds"), columns=columns) as w:
        w.write({"a": 1, "b": "one", "c": 1.5})
        with pytest.raises(FormatError, match="column 'b'") as wrong_type:
            w.write({"a": 2, "b": 2, "c": 2.5})
        assert isinstance(wrong_type.value, TypeError)  # as the TypeError mosaic raised
        with pytest.raises(FormatError, match=r"column 'a' \(int\): unexpected data size 3 bytes"):
            w.write({"a": b"abc", "b": "three", "c": 3.5})  # bytes pass through, then the size is checked
        with pytest.raises(MissingColumnError, match="missing column 'c'"):
            w.write({"a": 4, "b": "four"})
        w.write({"a": 5, "b": "five", "c": 5.5})
    from astreaming import StreamingDataset

    ds = StreamingDataset(local=str(tmp_path / "ds"), batch_size=1)
    assert [(s["a"], s["b"], float(s["c"])) for s in ds] == [(1, "one", 1.5), (5, "five", 5.5)]
    ds.close()
