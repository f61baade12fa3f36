"""Stopping the process's loop thread closes the HTTP sessions of every dataset still open on it.

The CI failure this guards against: a test stopped the shared loop thread while a dataset of an earlier
test, not yet collected, still had its GCS session open on that loop. Its finalizer found the loop gone
and could not close the session, and the garbage collector later reported "Unclosed client session" in
an unrelated test.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import pytest

from astreaming import StreamingDataset
from astreaming.fetch.loop_thread import get_loop_thread

from .remotes import Remote


@pytest.mark.parametrize("golden_remote", ["gs", "s3"], indirect=True)
def test_stopping_the_loop_thread_closes_open_sessions(
    golden_remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in golden_remote.env.items():
        monkeypatch.setenv(name, value)
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    ds = StreamingDataset(remote=golden_remote.roots["A"], local=str(tmp_path / "cache"), batch_size=1)
    first = ds[0]  # opens the backend (and its HTTP session) on the loop thread
    loop_thread = get_loop_thread()
    loop_thread.stop()
    assert not loop_thread.alive
    del ds
    gc.collect()
    assert [str(u.exc_value) for u in unraisable] == []
    # A fresh dataset works on the fresh loop thread the next use starts.
    again = StreamingDataset(remote=golden_remote.roots["A"], local=str(tmp_path / "cache"), batch_size=1)
    try:
        assert again[0] == first
        assert get_loop_thread() is not loop_thread
    finally:
        again.close()
