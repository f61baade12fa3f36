"""What a process reading a cached local dataset holds beyond torch: modules it never needs stay
unimported, and the resident memory astreaming adds to the process stays small (issue 12: peak RSS not
above the best peer's; torch's import is most of every peer's process).

Each measurement runs in a fresh interpreter (``sys.executable``, this tree on ``PYTHONPATH``): this test
process has imported everything already. Figures are the kernel's own (``/proc/self/status``,
``/proc/self/smaps``), so they hold under any load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from proc_status import STATUS_SOURCE

from astreaming import MDSWriter
from astreaming.engine import readers

pytestmark = [
    # The figures come from /proc/self/status and /proc/self/smaps, which only Linux has (CI runs Linux).
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux only)"),
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parents[2]

SAMPLES = 3000
BLOB = 10_000  # ~30 MB in three ~10 MB shards, as the `large` benchmark's 10 KB samples
SHARD = 10 << 20

#: Imported by nothing a cached local MDS walk without cache_limit does (the node ledger and sqlite3;
#: statistics and decimal; xxhash; anyio; the text formats and their writers; any storage SDK).
NOT_NEEDED = [
    "sqlite3",
    "astreaming.cache.ledger",
    "astreaming.cache.budget",
    "astreaming.cache.pins",
    "statistics",
    "decimal",
    "xxhash",
    "anyio",
    "astreaming.format.jsonl",
    "astreaming.format.xsv",
    "astreaming.format.writer",
    "aiohttp",
    "botocore",
]

#: astreaming's own peak resident memory over torch's in the walk below, in bytes: about 9.5 MB was
#: measured (modules ~4 MB, mapped shard pages <= 4 MB, plan and the decoded segment); before the
#: lazy imports, the private copy of the offsets table and the 1 MB release interval, 14 MB.
OWN_PEAK = 12 << 20

#: Resident bytes of the mapped shard files at any point of the walk: the pages read since the last
#: release, within the kernel's large folios (2 MB here), with slack (4.5 MB measured at a 2 MB release).
#: Before the offsets table was copied, the head of the file stayed mapped beside them: 6-6.8 MB.
MAPPED_PEAK = readers.RELEASE_EVERY + (4 << 20)

SCRIPT = STATUS_SOURCE + textwrap.dedent(
    """
    import json, sys

    def mapped(root):
        resident, inside = 0, False
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(maxsplit=5)
                if "-" in head[0] and not head[0].endswith(":"):
                    inside = len(head) == 6 and head[5].strip().startswith(root)
                elif inside and head[0] == "Rss:":
                    resident += int(head[1]) * 1024
        return resident

    import torch  # noqa: F401  (StreamingDataset is a torch IterableDataset: its import is the base)

    before = set(sys.modules)
    base = status("VmRSS")
    from astreaming import StreamingDataset

    root = sys.argv[1]
    ds = StreamingDataset(local=root, batch_size=256)
    count, id_sum, mapped_peak = 0, 0, 0
    for sample in ds:
        count += 1
        id_sum += sample["id"]
        if count % 25 == 0:
            mapped_peak = max(mapped_peak, mapped(root))
    print(json.dumps({
        "count": count,
        "id_sum": id_sum,
        "own_peak": status("VmHWM") - base,
        "mapped_peak": mapped_peak,
        "imported": sorted(set(sys.modules) - before),
    }))
    """
)


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One cached epoch in a fresh interpreter: what it imported and held."""
    root = tmp_path_factory.mktemp("footprint") / "ds"
    with MDSWriter(out=str(root), columns={"id": "int", "blob": "bytes"}, size_limit=SHARD) as writer:
        for i in range(SAMPLES):
            writer.write({"id": i, "blob": bytes([i % 251]) * BLOB})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["count"] == SAMPLES
    assert result["id_sum"] == SAMPLES * (SAMPLES - 1) // 2
    return result


def test_cached_local_walk_imports_nothing_it_does_not_use(walked: dict[str, Any]) -> None:
    imported = set(walked["imported"])
    loaded = sorted(m for m in imported if any(m == n or m.startswith(n + ".") for n in NOT_NEEDED))
    assert loaded == []


def test_cached_local_walk_keeps_mapped_pages_within_two_folios(walked: dict[str, Any]) -> None:
    assert 0 < walked["mapped_peak"] <= MAPPED_PEAK, walked["mapped_peak"]


def test_cached_local_walk_adds_little_memory_to_the_process(walked: dict[str, Any]) -> None:
    assert walked["own_peak"] <= OWN_PEAK, walked["own_peak"]
