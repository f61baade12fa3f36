"""``dataframe_to_mds`` on pyspark 4 in local mode: mosaic's type mapping, partitions, merge, remote output,
failed tasks and reruns; every result read back with astreaming."""

from __future__ import annotations

import decimal
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming import StreamingDataset
from astreaming.convert.spark import SparkTaskError, dataframe_to_mds
from astreaming.errors import ConfigError
from astreaming.format.local import LocalDataset
from astreaming.output.transfer import list_objects, upload
from astreaming.testing.servers import FakeGCSServer

from .conftest import GCS_BUCKET

pytestmark = pytest.mark.spark

ROWS = 40


def _frame(spark: Any, partitions: int = 3) -> Any:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("small", T.IntegerType()),
            T.StructField("x", T.DoubleType()),
            T.StructField("f", T.FloatType()),
            T.StructField("name", T.StringType()),
            T.StructField("blob", T.BinaryType()),
            T.StructField("price", T.DecimalType(10, 2)),
            T.StructField("emb", T.ArrayType(T.FloatType())),
        ]
    )
    rows = [
        (
            i,
            i * 3,
            i / 8,
            float(i) / 2,
            f"row {i}",
            bytes([i]) * 2,
            decimal.Decimal(f"{i}.25"),
            [float(i), 1.5],
        )
        for i in range(ROWS)
    ]
    return spark.createDataFrame(rows, schema).repartition(partitions, "id").sortWithinPartitions("id")


def _read_local(root: Path) -> list[dict[str, Any]]:
    ds = LocalDataset(root)
    try:
        return [ds[i] for i in range(len(ds))]
    finally:
        ds.close()


def _check_rows(samples: list[dict[str, Any]]) -> None:
    assert sorted(int(s["id"]) for s in samples) == list(range(ROWS))
    for s in samples:
        i = int(s["id"])
        assert isinstance(s["id"], np.int64) and isinstance(s["small"], np.int32) and int(s["small"]) == 3 * i
        assert float(s["x"]) == i / 8 and float(s["f"]) == i / 2 and s["name"] == f"row {i}"
        assert s["blob"] == bytes([i]) * 2 and s["price"] == decimal.Decimal(f"{i}.25")
        assert s["emb"].dtype == np.float32 and s["emb"].tolist() == [float(i), 1.5]


def test_local_output_mapping_partitions_and_merge(spark: Any, tmp_path: Path) -> None:
    out = tmp_path / "mds"
    df = _frame(spark)
    assert dataframe_to_mds(df, mds_kwargs={"out": str(out), "size_limit": 500}) == (str(out), None)
    index = json.loads((out / "index.json").read_text())
    shard = index["shards"][0]
    assert dict(zip(shard["column_names"], shard["column_encodings"], strict=True)) == {
        "blob": "bytes",
        "emb": "ndarray:float32",
        "f": "float32",
        "id": "int64",
        "name": "str",
        "price": "str_decimal",
        "small": "int32",
        "x": "float64",
    }
    assert shard["compression"] == "zstd"  # mosaic's default for dataframe_to_mds
    # One directory per partition, named for the partition, this call and the task attempt.
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert [d.split("-")[0] for d in dirs] == ["00000", "00001", "00002"]
    assert len({d.split("-")[1] for d in dirs}) == 1 and all(d.endswith("-0") for d in dirs)
    assert sorted(p.name for p in out.iterdir() if not p.is_dir()) == ["index.json"]
    # The merged index lists partition 0's shards, then 1's, then 2's.
    prefixes = [s["raw_data"]["basename"].split("/")[0] for s in index["shards"]]
    assert prefixes == sorted(prefixes) and set(prefixes) == set(dirs)
    samples = _read_local(out)
    _check_rows(samples)
    parts = [_read_local(out / p) for p in dirs]
    assert [int(s["id"]) for s in samples] == [int(s["id"]) for part in parts for s in part]


def test_udf_iterable_with_columns(spark: Any, tmp_path: Path) -> None:
    def double(frame: Any, factor: int) -> Any:
        for row in frame.itertuples():
            yield {"id": int(row.id), "twice": f"{row.name}" * factor}

    out = tmp_path / "udf"
    dataframe_to_mds(
        _frame(spark, 2),
        mds_kwargs={"out": str(out), "columns": {"id": "int", "twice": "str"}, "compression": None},
        udf_iterable=double,
        udf_kwargs={"factor": 2},
    )
    samples = _read_local(out)
    assert sorted((s["id"], s["twice"]) for s in samples) == [(i, f"row {i}" * 2) for i in range(ROWS)]
    with pytest.raises(ConfigError, match="with udf_iterable, give mds_kwargs\\['columns'\\]"):
        dataframe_to_mds(_frame(spark), mds_kwargs={"out": str(tmp_path / "x")}, udf_iterable=double)


def test_remote_output_on_fake_gcs(spark: Any, spark_gcs: FakeGCSServer, tmp_path: Path) -> None:
    url = f"gs://{GCS_BUCKET}/ds-{uuid.uuid4().hex[:8]}"
    assert dataframe_to_mds(_frame(spark), mds_kwargs={"out": url, "hashes": ["xxh64"]}) == (None, url)
    with StreamingDataset(remote=url, local=str(tmp_path / "cache"), batch_size=1) as ds:
        samples = [ds[i] for i in range(ds.num_samples)]
    _check_rows(samples)
    # A rerun with exist_ok replaces the partitions: those of the first call are deleted, not left behind.
    first = _remote_dirs(url)
    (tmp_path / "keep.txt").write_text("not a partition")
    upload(tmp_path / "keep.txt", f"{url}/notes/keep.txt")
    dataframe_to_mds(_frame(spark), mds_kwargs={"out": url, "exist_ok": True})
    second = _remote_dirs(url)
    assert len(first) == len(second) == 3 and not first & second
    top = [u for u in list_objects(url + "/") if "/" not in u[len(url) + 1 :]]
    assert top == [f"{url}/index.json"]
    assert list_objects(f"{url}/notes/") == [f"{url}/notes/keep.txt"]  # not a partition: kept
    with StreamingDataset(remote=url, local=str(tmp_path / "cache2"), batch_size=1) as ds:
        _check_rows([ds[i] for i in range(ds.num_samples)])


def _remote_dirs(url: str) -> set[str]:
    """The partition directories below the remote root ``url``."""
    parts = [u[len(url) + 1 :].split("/", 1) for u in list_objects(url + "/")]
    return {part[0] for part in parts if len(part) == 2 and part[0] != "notes"}


def test_failed_task_publishes_no_index_and_rerun_needs_exist_ok(spark: Any, tmp_path: Path) -> None:
    out = tmp_path / "fail"

    def explode(frame: Any) -> Any:
        for row in frame.itertuples():
            if row.id == 25:
                raise ValueError("row 25 is bad")
            yield {"id": int(row.id)}

    with pytest.raises(SparkTaskError, match=r"no index\.json was published") as info:
        dataframe_to_mds(
            _frame(spark), mds_kwargs={"out": str(out), "columns": {"id": "int"}}, udf_iterable=explode
        )
    assert "row 25 is bad" in str(info.value)
    assert not (out / "index.json").exists()
    # The partition holding row 25 published nothing. Spark cancels the tasks still running when one
    # fails, so how many other partitions finished first is up to the scheduler: each one that did
    # published a complete, readable index of its own rows.
    # Each attempt has a directory of its own; the failing partition's two attempts published nothing.
    parts = sorted(p for p in out.iterdir() if p.is_dir())
    published = [p for p in parts if (p / "index.json").exists()]
    assert len({p.name.split("-")[0] for p in published}) == len(published) < len(parts) <= 4
    written = [int(s["id"]) for p in published for s in _read_local(p)]
    assert 25 not in written and len(written) == len(set(written))
    # A rerun refuses the partial output, and replaces it with exist_ok.
    with pytest.raises(ConfigError, match="not empty"):
        dataframe_to_mds(_frame(spark), mds_kwargs={"out": str(out)})
    dataframe_to_mds(_frame(spark), mds_kwargs={"out": str(out), "exist_ok": True})
    _check_rows(_read_local(out))


def test_a_retried_task_is_merged_once(spark: Any, tmp_path: Path) -> None:
    from pyspark import TaskContext

    def flaky(frame: Any) -> Any:
        context = TaskContext.get()
        for row in frame.itertuples():
            if row.id == 25 and context.attemptNumber() == 0:
                raise ValueError("the first attempt at row 25 fails")
            yield {"id": int(row.id)}

    out = tmp_path / "retry"
    columns = {"id": "int"}
    dataframe_to_mds(_frame(spark), mds_kwargs={"out": str(out), "columns": columns}, udf_iterable=flaky)
    # Spark ran the partition holding row 25 again; only the accepted attempt's directory is left.
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert [d.split("-")[0] for d in dirs] == ["00000", "00001", "00002"]
    assert sorted(d.rsplit("-", 1)[1] for d in dirs) == ["0", "0", "1"]
    assert sorted(int(s["id"]) for s in _read_local(out)) == list(range(ROWS))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_task_of_an_earlier_call_cannot_touch_the_rerun(spark: Any, tmp_path: Path) -> None:
    """A failed call's task that Spark did not stop in time runs on during the rerun, or only starts then.

    When a job fails Spark marks its other tasks killed, but a Python worker busy importing pandas or
    inside a udf runs on until it next touches its socket. CI once saw such a task empty the rerun's
    partition directory after the rerun had published it. Here the stale task is the function Spark's
    worker runs (``mapInPandas``'s), called after the rerun: the rerun's output must stay byte for byte.
    """
    import pandas as pd

    from astreaming.convert import spark as spark_convert

    out = tmp_path / "rerun"
    columns = {"id": "int64", "name": "str"}
    dataframe_to_mds(_frame(spark), mds_kwargs={"out": str(out), "columns": columns})
    published = _files(out)
    stale = spark_convert._task(columns, str(out), {"compression": "zstd"}, None, {}, "0ldca11")
    frame = pd.DataFrame({"id": [-1, -2], "name": ["stale", "stale"]})
    assert len(list(stale(iter([frame])))) == 1
    after = _files(out)
    assert {name: after[name] for name in published} == published
    # The stale attempt wrote only below a directory of its own, which no index references.
    assert {name.split("/")[0] for name in after.keys() - published.keys()} == {"00000-0ldca11-0"}
    samples = _read_local(out)
    assert sorted((int(s["id"]), s["name"]) for s in samples) == [(i, f"row {i}") for i in range(ROWS)]


def test_unmapped_type_is_refused_before_writing(spark: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame([(1, True)], "id long, flag boolean")
    with pytest.raises(ConfigError, match="column 'flag' has Spark type boolean"):
        dataframe_to_mds(df, mds_kwargs={"out": str(tmp_path / "bool")})
    assert not (tmp_path / "bool").exists()
    with pytest.raises(ConfigError, match="out'\\] is required"):
        dataframe_to_mds(df, mds_kwargs={})
