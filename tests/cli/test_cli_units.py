"""In-process checks of the CLI's pure helpers: the sample checker, index locations, number formats."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from astreaming.cli._fmt import fmt_bytes, fmt_rate, fmt_seconds, plural, table
from astreaming.cli.demo_data import DemoCheckError, SampleChecker
from astreaming.cli.demo_phases import collate_columns, rows
from astreaming.cli.inspect import index_location


def _sample(sid: int, size: int = 16) -> dict[str, object]:
    data = sid.to_bytes(8, "little") + bytes(size - 8)
    return {"id": sid, "data": data, "crc": zlib.crc32(data)}


def test_checker_accepts_a_complete_epoch_and_records_order() -> None:
    checker = SampleChecker(4, 16)
    assert checker.check_all([_sample(2), _sample(0), _sample(3), _sample(1)]) == 4
    checker.finish()
    assert checker.order == [2, 0, 3, 1]


def test_checker_rejects_duplicates_missing_and_corruption() -> None:
    checker = SampleChecker(3, 16)
    checker.check(_sample(1))
    with pytest.raises(DemoCheckError, match="sample 1 was yielded twice"):
        checker.check(_sample(1))
    with pytest.raises(DemoCheckError, match="2 of 3 samples never arrived"):
        checker.finish()
    with pytest.raises(DemoCheckError, match=r"outside 0\.\.2"):
        checker.check(_sample(3))
    bad = _sample(0)
    bad["crc"] = zlib.crc32(b"something else")
    with pytest.raises(DemoCheckError, match="sample 0: payload checksum mismatch"):
        SampleChecker(3, 16).check(bad)
    with pytest.raises(DemoCheckError, match="sample 2: payload has 24 bytes, expected 16"):
        SampleChecker(3, 16).check(_sample(2, size=24))
    swapped = _sample(0)
    swapped["id"] = 2
    with pytest.raises(DemoCheckError, match="sample 2: payload belongs to another sample"):
        SampleChecker(3, 16).check(swapped)


def test_collate_columns_round_trips() -> None:
    batch = [_sample(i) for i in range(3)]
    columns = collate_columns(batch)
    assert list(columns) == ["id", "data", "crc"]
    assert len(columns["id"]) == 3  # what StreamingDataLoader counts as the batch's size
    assert list(rows(columns)) == batch


def test_index_location(tmp_path: Path) -> None:
    assert index_location("s3://b/ds") == "s3://b/ds/index.json"
    assert index_location("s3://b/ds/") == "s3://b/ds/index.json"
    assert index_location("http://h:1/a/index.json") == "http://h:1/a/index.json"
    assert index_location(str(tmp_path)) == str(tmp_path / "index.json")
    renamed = tmp_path / "partition-index"  # an index file under another name is read as is
    renamed.write_text("{}")
    assert index_location(str(renamed)) == str(renamed)


def test_formats() -> None:
    assert fmt_bytes(999) == "999 B"
    assert fmt_bytes(82_474_341) == "82.5 MB"
    assert fmt_bytes(1_500_000_000) == "1.5 GB"
    assert fmt_seconds(0.0815) == "82 ms"
    assert fmt_seconds(2.5) == "2.50 s"
    assert fmt_rate(40_000, 2.0) == "20,000 samples/s"
    assert fmt_rate(1, 0) == "n/a samples/s"
    assert plural(1, "batch", "es") == "1 batch"
    assert plural(1200, "shard") == "1,200 shards"
    assert table([["1", "a"], ["10", "bb"]], header=["#", "x"]).splitlines() == ["#   x", " 1  a", "10  bb"]
