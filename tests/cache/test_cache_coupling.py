"""Two jobs on one cache: a leading consumer waits (bounded) for a lagging one; exited workers leave hints.

Each :class:`NodeBudget` over its own :class:`Ledger` handle stands for one process, as in
``test_cache_ledger.py``. Both clocks are injected: the budget's (how long a consumer has waited) and the
ledger's (when a process last moved, when a hint expires), so nothing here sleeps.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from astreaming.cache.budget import NodeBudget
from astreaming.cache.ledger import Ledger, LedgerKey
from astreaming.cache.nextuse import LATER
from astreaming.cache.procid import process_alive, process_tag

SHARD = 1000
SHARDS = 6


def keys() -> list[LedgerKey | None]:
    return [LedgerKey(0, f"shard.{s:05d}.mds", (f"shard.{s:05d}.mds",)) for s in range(SHARDS)]


def resident(root: Path) -> set[int]:
    return {int(p.name.split(".")[1]) for p in root.glob("shard.*.mds")}


class Clock:
    """One injected time for the budget and the ledger of every process of a test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Process:
    """A budget standing for one process, ``progress`` epochs through its order."""

    def __init__(
        self, root: Path, clock: Clock, *, progress: float | None, slot: str | None = None, limit: int = 2
    ) -> None:
        self.root = root
        self.progress = progress
        self.budget = NodeBudget(
            limit * SHARD,
            Ledger([root], clock=clock),
            keys(),
            clock=clock,
            progress=lambda: self.progress,
            hint_slot=slot,
        )
        self.budget.open()

    def download(self, shard: int) -> bool:
        granted = self.budget.try_reserve(shard, SHARD, distance=0)
        if granted is None:
            return False
        if granted:
            (self.root / f"shard.{shard:05d}.mds").write_bytes(bytes(SHARD))
            self.budget.commit(shard, SHARD)
        return True


def lagging_reader(tmp_path: Path, clock: Clock) -> tuple[Process, Process]:
    """``lead`` (1.5 epochs done) and ``lag`` (0.5), which cached shards 0 and 1 and reads them next."""
    lead, lag = Process(tmp_path, clock, progress=1.5), Process(tmp_path, clock, progress=0.5)
    assert lag.download(0) and lag.download(1)
    lag.budget.publish(10.0, [(0, 12.0), (1, 20.0)])
    return lead, lag


def test_a_leading_consumer_leaves_a_lagging_readers_next_shards_to_it(tmp_path: Path) -> None:
    clock = Clock()
    lead, lag = lagging_reader(tmp_path, clock)
    # The cache is full of what the lagging reader needs next: evicting would cost it a second download.
    assert not lead.download(2)
    assert lead.budget.statistics().couplings == 1 and resident(tmp_path) == {0, 1}
    # It moves on: shard 0 is behind it, and goes.
    clock.now += 0.5
    lag.budget.publish(13.0, [(1, 20.0)])
    assert lead.download(2) and resident(tmp_path) == {1, 2}


def test_a_reader_less_than_couple_gap_behind_is_not_waited_for(tmp_path: Path) -> None:
    # The ranks and workers of one job stay this close (torch takes their batches in turn): waiting
    # among them only slows the job, which the sibling rule (``yield_for``) already covers.
    clock = Clock()
    lead = Process(tmp_path, clock, progress=1.5)
    near = Process(tmp_path, clock, progress=1.5 - lead.budget.couple_gap / 2)
    assert near.download(0) and near.download(1)
    near.budget.publish(10.0, [(0, 12.0), (1, 20.0)])
    assert lead.download(2) and resident(tmp_path) == {0, 2}  # 1, needed later, went at once
    assert lead.budget.statistics().couplings == 0


def test_a_lagging_reader_waits_for_nobody_ahead_of_it(tmp_path: Path) -> None:
    clock = Clock()
    lead = Process(tmp_path, clock, progress=1.5)
    lag = Process(tmp_path, clock, progress=0.5)
    assert lead.download(0) and lead.download(1)
    lead.budget.publish(10.0, [(0, 12.0), (1, 20.0)])
    # The leader's next shards are no reason for the lagging reader to wait: no wait can close a cycle.
    assert lag.download(2) and len(resident(tmp_path)) == 2
    assert lag.budget.statistics().couplings == 0


def test_a_paused_laggard_is_not_waited_for_after_stall_after(tmp_path: Path) -> None:
    clock = Clock()
    lead, lag = lagging_reader(tmp_path, clock)
    assert not lead.download(2)
    # The lagging job is paused (stopped, or its loader idle): it publishes the same position, or nothing.
    clock.now += lag.budget.stall_after / 2
    lag.budget.publish(10.0, [(0, 12.0), (1, 20.0)])
    assert not lead.download(2)
    clock.now += lag.budget.stall_after / 2
    assert lead.download(2) and resident(tmp_path) == {0, 2}  # 1, needed later, went


def test_a_moving_laggard_is_waited_for_at_most_couple_for_seconds(tmp_path: Path) -> None:
    clock = Clock()
    lead, lag = lagging_reader(tmp_path, clock)
    position = 10.0
    waited = 0.0
    while not lead.download(2):
        # A slow job: it moves, but not past shard 0 or 1.
        clock.now += 0.5
        waited += 0.5
        position += 0.1
        lag.budget.publish(position, [(0, 12.0), (1, 20.0)])
        assert waited <= lead.budget.couple_for
    assert waited == lead.budget.couple_for
    assert resident(tmp_path) == {0, 2}


def test_a_process_of_unknown_progress_neither_waits_nor_is_waited_for(tmp_path: Path) -> None:
    clock = Clock()
    lead = Process(tmp_path, clock, progress=None)
    lag = Process(tmp_path, clock, progress=None)
    assert lag.download(0) and lag.download(1)
    lag.budget.publish(10.0, [(0, 12.0), (1, 20.0)])
    assert lead.download(2)


# -- hints of workers that exited ---------------------------------------------------------------------


def test_a_closed_workers_hint_keeps_its_successors_first_shard_until_the_successor_speaks(
    tmp_path: Path,
) -> None:
    clock = Clock()
    worker = Process(tmp_path, clock, progress=0.9, slot="dataset-w0", limit=3)
    assert worker.download(0) and worker.download(1)
    worker.budget.close(hints=[(0, LATER + 0.0)])  # the next epoch starts with shard 0; 1 is done
    other = Process(tmp_path, clock, progress=None, limit=3)
    assert other.download(2)
    # Shard 1 is needed by nobody, shard 0 by the worker's successor: 1 goes first, then 0.
    assert other.download(3) and resident(tmp_path) == {0, 2, 3}
    successor = Process(tmp_path, clock, progress=None, slot="dataset-w0", limit=3)
    successor.budget.publish(0.0, [])  # it speaks for the slot now (and needs nothing cached)
    with successor.budget.ledger.transaction() as conns:
        assert not conns[0].execute("SELECT * FROM hints").fetchall()


def hint_rows(root: Path, clock: Clock) -> list[tuple[object, ...]]:
    ledger = Ledger([root], clock=clock)
    with ledger.transaction() as conns:
        ledger.sweep(conns)
        rows = conns[0].execute("SELECT slot, anchor FROM hints").fetchall()
    ledger.close()
    return rows


def test_hints_live_while_their_anchor_lives_and_at_most_their_ttl(tmp_path: Path) -> None:
    clock = Clock()
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = f"{int(done.stdout)}:"  # an exited process (its pid, no start time: it cannot be read)
    ledger = Ledger([tmp_path], clock=clock)
    key = keys()[0]
    assert key is not None
    with ledger.transaction() as conns:
        ledger.leave_hints(conns, "a-w0", process_tag(os.getpid()), [(key, LATER)], ttl=60)
        ledger.leave_hints(conns, "b-w0", gone, [(key, LATER)], ttl=60)
    ledger.close()
    assert hint_rows(tmp_path, clock) == [("a-w0", process_tag(os.getpid()))]  # b's parent is gone
    clock.now += 60
    assert hint_rows(tmp_path, clock) == []  # expired, although its anchor lives


def test_a_process_tag_tells_a_recycled_pid_from_the_process_it_named() -> None:
    tag = process_tag(os.getpid())
    assert process_alive(tag)
    pid, _, start = tag.partition(":")
    if start:  # /proc is there: another start time is another process
        assert not process_alive(f"{pid}:{int(start) + 1}")
    assert not process_alive("not-a-pid") and not process_alive("0:")
    assert math.isfinite(float(pid))


def test_lookahead_never_displaces_the_next_epochs_first_shards(tmp_path: Path) -> None:
    # Kept over shards nobody needs, the next epoch's first shards would otherwise be the only shards a
    # look-ahead download may displace: the cache fills with them and look-ahead evicts them one by one.
    clock = Clock()
    uses = {0: LATER + 0.0, 1: LATER + 40.0}
    budget = NodeBudget(
        2 * SHARD,
        Ledger([tmp_path], clock=clock),
        keys(),
        clock=clock,
        next_use=lambda s: uses.get(s, math.inf),
    )
    budget.open()
    for shard in (0, 1):
        assert budget.try_reserve(shard, SHARD, distance=0) == SHARD
        (tmp_path / f"shard.{shard:05d}.mds").write_bytes(bytes(SHARD))
        budget.commit(shard, SHARD)
    assert budget.try_reserve(2, SHARD, distance=5) is None  # look-ahead waits
    assert budget.statistics().deferrals == 1 and resident(tmp_path) == {0, 1}
    # The consumer's own need displaces the one the next epoch needs latest.
    assert budget.try_reserve(2, SHARD, distance=0) == SHARD and resident(tmp_path) == {0}
