"""The next epoch's hint, looked up on a thread of its own: delivered at most once, never after a cancel."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from astreaming.engine.nextepoch import NextEpochHint
from astreaming.order.quiet import quiet, warn


def test_a_walk_that_ends_first_waits_for_the_lookup_and_gets_it() -> None:
    delivered: list[list[int]] = []
    hint = NextEpochHint(lambda: np.array([3, 1]), lambda s: delivered.append(s.tolist()), start_at=100)
    assert not hint.due(99) and hint.due(100)
    hint.finish()  # never started by the walk: started now, and waited for
    assert delivered == [[3, 1]]
    hint.cancel()
    assert delivered == [[3, 1]]


def test_nothing_is_delivered_after_a_cancel() -> None:
    running, release = threading.Event(), threading.Event()
    delivered: list[object] = []

    def compute() -> np.ndarray:
        running.set()
        assert release.wait(60)
        return np.array([1])

    hint = NextEpochHint(compute, delivered.append, start_at=0)
    hint.start()
    assert running.wait(60)
    hint.cancel()  # the walk stopped early while the lookup ran
    release.set()
    hint.done.result(60)
    assert delivered == []
    assert not hint.due(10**9)  # started once: never again


def test_a_failed_lookup_delivers_nothing_and_raises_nowhere() -> None:
    delivered: list[object] = []

    def compute() -> np.ndarray:
        raise ValueError("the next epoch's own plan says this")

    hint = NextEpochHint(compute, delivered.append, start_at=0)
    hint.finish()
    assert delivered == [] and hint.done.result(0) is None


def test_quiet_silences_only_its_own_thread() -> None:
    # The hint's thread is quiet while the reading thread keeps its warnings (catch_warnings, process-wide,
    # could not do both).
    inside, leave = threading.Event(), threading.Event()
    heard: list[str] = []

    def hint_thread() -> None:
        with quiet():
            warn("from the hint")
            inside.set()
            assert leave.wait(60)
            warn("from the hint again")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=hint_thread)
        thread.start()
        assert inside.wait(60)
        warn("from the reading thread")
        leave.set()
        thread.join(60)
        heard = [str(w.message) for w in caught]
    assert heard == ["from the reading thread"]
    with pytest.warns(UserWarning, match="after the block"):
        warn("after the block")
