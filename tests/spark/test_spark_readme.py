"""The README's Spark block, run as a reader runs it (its own process and SparkSession)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from astreaming.format.local import LocalDataset

sys.path.insert(0, str(Path(__file__).parent.parent))
from readme_blocks import blocks, run_block

pytestmark = pytest.mark.spark


def test_readme_spark_block(tmp_path: Path) -> None:
    (block,) = [b for b in blocks() if b.mark == "spark"]
    env = dict(os.environ)
    env.update(
        {
            "TMPDIR": str(tmp_path),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",  # stay on loopback
        }
    )
    proc = run_block(block, tmp_path, env)
    assert proc.returncode == 0, f"README line {block.line} failed:\n{proc.stdout}\n{proc.stderr}"
    ds = LocalDataset(tmp_path / "mds")
    try:
        assert sorted(int(ds[i]["id"]) for i in range(len(ds))) == list(range(1000))
    finally:
        ds.close()
