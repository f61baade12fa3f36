"""Plumbing shared by the peer scripts (run under the peer venv's python, never astreaming's).

Importing this module puts the torchvision stand-in (``stubs/``) first on ``sys.path``, so it must be
imported before ``streaming``; it also makes ``benchmarks/_common.py`` importable.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE / "stubs"):  # stubs ends up first
    if str(_path) in sys.path:
        sys.path.remove(str(_path))
    sys.path.insert(0, str(_path))


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last stdout line: ``_common.run_peer`` parses it."""
    print(json.dumps(result), flush=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def private_copy(src: str | Path) -> Path:
    """A copy of the dataset directory that mosaic may normalise (it deletes files it deems partial).

    Hard links when possible: mosaic only ever unlinks or renames shard files, never writes into them,
    so the source stays intact and the copy costs no disk nor page cache.
    """
    dst = Path(tempfile.mkdtemp(prefix="mosaic-local-")) / "data"
    shutil.copytree(src, dst, copy_function=_link_or_copy)
    return dst


def cleanup(*dirs: Path) -> None:
    """Drop mosaic's objects, unlink its shared memory and remove the private copies."""
    # Dataset objects release their shm in __del__: collect them before the sweep.
    gc.collect()
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    for d in dirs:
        shutil.rmtree(d.parent, ignore_errors=True)
