"""One local-mode SparkSession for the Spark tests (marked ``spark``: run by ``nox -s spark``).

Tests marked ``spark`` are deselected unless the ``-m`` expression names the marker, so a plain
``pytest -m "not node"`` does not need pyspark or Java. pyspark is imported inside the fixtures only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from astreaming.testing.servers import FakeGCSServer

GCS_BUCKET = "astreaming-spark"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "spark" in (config.option.markexpr or ""):
        return
    spark_items = [item for item in items if item.get_closest_marker("spark") is not None]
    if spark_items:
        config.hook.pytest_deselected(items=spark_items)
        items[:] = [item for item in items if item.get_closest_marker("spark") is None]


@pytest.fixture(scope="session")
def spark_gcs(gcs_server: FakeGCSServer) -> FakeGCSServer:
    """fake-gcs-server with this suite's bucket."""
    gcs_server.create_bucket(GCS_BUCKET)
    return gcs_server


@pytest.fixture(scope="session")
def spark(spark_gcs: FakeGCSServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A SparkSession in local mode with 2 cores; its Python workers reach fake-gcs-server."""
    from pyspark.sql import SparkSession

    # The JVM and its Python workers inherit this environment when the session starts.
    saved = {
        k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    }
    os.environ["STORAGE_EMULATOR_HOST"] = spark_gcs.url
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # tests stay on loopback
    session = (
        # Two attempts per task, as on a cluster (local mode defaults to one): retries are tested.
        SparkSession.builder.master("local[2,2]")
        .appName("astreaming-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.local.dir", str(tmp_path_factory.mktemp("spark-local")))
        .config("spark.executorEnv.STORAGE_EMULATOR_HOST", spark_gcs.url)
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
