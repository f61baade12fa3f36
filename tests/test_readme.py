"""Every code block of the README that a reader would run is run here, in order (see readme_blocks)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from readme_blocks import Block, blocks, run_block

from astreaming.testing.servers import MotoS3Server

BLOCKS = [b for b in blocks() if b.runs and b.mark != "spark"]


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3Server]:
    """A moto server of the README's own (its buckets are named in the README)."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reader's working directory, shared by the blocks in README order."""
    return tmp_path_factory.mktemp("readme")


def _env(workdir: Path) -> dict[str, str]:
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the astreaming script
    for key in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(key, None)
    return env


def test_the_readme_has_the_blocks_this_suite_runs() -> None:
    python = [b for b in blocks() if b.lang == "python"]
    assert len(python) >= 5 and all(b.runs for b in python)
    assert [b for b in python if b.mark == "spark"], "the Spark block is run by tests/spark"
    assert any(b.lang == "bash" and b.mark == "s3" for b in BLOCKS)  # the quick start's commands


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}-{b.lang}" for b in BLOCKS])
def test_readme_block(block: Block, workdir: Path, s3: MotoS3Server) -> None:
    env = _env(workdir)
    if block.mark == "s3":
        for bucket in block.buckets:
            s3.create_bucket(bucket)
        env.update(MotoS3Server.credentials)
        env.update(
            {
                "S3_ENDPOINT_URL": s3.url,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
    proc = run_block(block, workdir, env)
    assert proc.returncode == 0, f"README line {block.line} failed:\n{proc.stdout}\n{proc.stderr}"
