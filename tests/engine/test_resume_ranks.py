"""Two rank processes on one node stop mid-epoch and restart from their own checkpoints, reading from a
moto S3 server under a ``cache_limit`` that forces eviction: each rank continues exactly where it stopped,
and over both ranks every sample of the epoch comes once (the restart in a new cache directory, as on new
machines, and in the stopped job's warm one, as after a preemption on the same machines).

Marked ``node`` (run by ``nox -s node``): nine rank processes per case, 40-130 s each on a loaded machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from astreaming.order import hints
from astreaming.testing.servers import MotoS3Server

from . import stacks
from .conftest import MakeDataset
from .remotes import BUCKET, s3_env
from .test_node_cache import assert_clean, failure, shard_sizes

JOB = Path(__file__).with_name("resume_job.py")
RANKS = 2
SAMPLES = 600


def run_ranks(
    tmp_path: Path, name: str, request: dict[str, Any], env: dict[str, str], timeout: float = 240
) -> list[dict[str, Any]]:
    """Run ``resume_job.py`` as 2 rank processes of one node with ``request``; their results, in rank order
    (a rank still running after ``timeout`` seconds fails the test with its stacks)."""
    procs = []
    for rank in range(RANKS):
        req = tmp_path / f"{name}-r{rank}.request.json"
        req.write_text(json.dumps({**request, "state": str(tmp_path / f"state-r{rank}.json")}))
        rank_env = {**os.environ, **env, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        argv = [sys.executable, str(JOB), str(req), str(tmp_path / f"{name}-r{rank}.result.json")]
        procs.append(stacks.start(argv, env=rank_env, stdout=subprocess.DEVNULL))
    results = []
    for rank, proc in enumerate(procs):
        _, err = stacks.communicate(proc, timeout)
        assert proc.returncode == 0, failure(err)
        results.append(json.loads((tmp_path / f"{name}-r{rank}.result.json").read_text()))
    return results


@pytest.mark.node
@pytest.mark.parametrize(("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")])
@pytest.mark.parametrize("restart", ["fresh-cache", "warm-cache"])
def test_two_ranks_resume_under_a_cache_limit_from_s3(
    make_dataset: MakeDataset,
    s3_server: MotoS3Server,
    tmp_path: Path,
    workers: int,
    context: str | None,
    restart: str,
) -> None:
    source = make_dataset(SAMPLES, size_limit=1200)
    prefix = uuid.uuid4().hex[:8]
    s3_server.create_bucket(BUCKET)
    for path in sorted(source.iterdir()):
        s3_server.put_object(BUCKET, f"{prefix}/{path.name}", path.read_bytes())
    total, _, index = shard_sizes(source)
    common = dict(
        remote=f"s3://{BUCKET}/{prefix}", batch_size=6, shuffle=True, shuffle_seed=5, predownload=12
    )
    limited = {**common, "cache_limit": index + int(0.3 * total)}
    loader = {"num_workers": workers, "context": context}
    env = s3_env(s3_server)

    full = run_ranks(
        tmp_path,
        "full",
        {**loader, "phase": "full", "epochs": 2, "dataset": {**common, "local": str(tmp_path / "free")}},
        env,
    )
    stopped_cache = tmp_path / "job"
    stop = {**loader, "phase": "stop", "stop_after": 7, "dataset": {**limited, "local": str(stopped_cache)}}
    stopped = run_ranks(tmp_path, "stop", stop, env)
    assert stopped[0]["state"] == stopped[1]["state"]
    assert stopped[0]["state"]["sample_in_epoch"] == RANKS * 7 * 6
    local = stopped_cache if restart == "warm-cache" else tmp_path / "restarted"
    resume = {**loader, "phase": "resume", "dataset": {**limited, "local": str(local)}}
    assert isinstance(stopped[0]["state"].get(hints.KEY), str)  # the checkpoint carries the epoch's draws
    if restart == "fresh-cache":
        # New machines: no plan files or epoch state of the node either, so the ranks resume from the
        # draws their checkpoint carries.
        machine = tmp_path / "new-machine"
        machine.mkdir()
        env = {**env, "TMPDIR": str(machine)}
    resumed = run_ranks(tmp_path, "resume", resume, env)

    for rank in range(RANKS):
        head, (tail, following) = stopped[rank]["epochs"][0], resumed[rank]["epochs"]
        assert head + tail == full[rank]["epochs"][0], f"rank {rank}"
        assert following == full[rank]["epochs"][1], f"rank {rank}: the epoch after the resumed one"
    epoch = sorted(
        i for rank in range(RANKS) for i in stopped[rank]["epochs"][0] + resumed[rank]["epochs"][0]
    )
    assert epoch == list(range(SAMPLES))
    assert resumed[0]["state_at_end"]["epoch"] == 1
    assert_clean(local)
