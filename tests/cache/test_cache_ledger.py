"""The node-wide ledger, pins and budget on real files, with several handles standing for processes.

Each :class:`NodeBudget` over its own :class:`Ledger` handle has its own identity in the ledger, exactly
as two processes would; the tests that need a process to die run a real subprocess and kill it.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from astreaming.cache.budget import NodeBudget, required_bytes
from astreaming.cache.ledger import Ledger, LedgerKey
from astreaming.cache.pins import Pins
from astreaming.errors import CacheError, ConfigError

SHARD = 1000
SHARDS = 10


def keys() -> list[LedgerKey | None]:
    return [LedgerKey(0, f"shard.{s:05d}.mds", (f"shard.{s:05d}.mds",)) for s in range(SHARDS)]


def write(root: Path, shard: int, nbytes: int = SHARD) -> None:
    (root / f"shard.{shard:05d}.mds").write_bytes(bytes([shard]) * nbytes)


def resident(root: Path) -> set[int]:
    return {int(p.name.split(".")[1]) for p in root.glob("shard.*.mds")}


class Process:
    """A budget and pins standing for one process on the node."""

    def __init__(
        self,
        root: Path,
        limit: int,
        next_use: dict[int, float] | None = None,
        *,
        protect_within: float = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.next_use = next_use or {}
        self.evicted: list[int] = []
        self.budget = NodeBudget(
            limit,
            Ledger([root]),
            keys(),
            next_use=lambda s: self.next_use.get(s, math.inf),
            on_evict=self.evicted.append,
            protect_within=protect_within,
            clock=clock,
        )
        self.budget.open()
        self.pins = Pins([root / f"shard.{s:05d}.mds" for s in range(SHARDS)])

    def download(self, shard: int, *, distance: float = 0) -> bool:
        granted = self.budget.try_reserve(shard, SHARD, distance=distance)
        if granted is None:
            return False
        if granted:
            write(self.root, shard)
            self.budget.commit(shard, SHARD)
        return True


def test_two_processes_share_one_budget(tmp_path: Path) -> None:
    a, b = Process(tmp_path, 3 * SHARD), Process(tmp_path, 3 * SHARD)
    for shard in (0, 1, 2):
        assert a.download(shard)
    assert b.budget.usage() == 3 * SHARD  # b sees what a cached
    assert b.download(3)  # evicts one of a's shards to make room
    assert len(resident(tmp_path)) == 3
    assert a.budget.usage() == 3 * SHARD


def test_a_shard_resident_or_in_flight_elsewhere_costs_nothing(tmp_path: Path) -> None:
    a, b = Process(tmp_path, 2 * SHARD), Process(tmp_path, 2 * SHARD)
    assert a.budget.try_reserve(0, SHARD, distance=0) == SHARD  # a downloads shard 0
    assert b.budget.try_reserve(0, SHARD, distance=0) == 0  # b waits for a's publish
    assert b.budget.usage() == SHARD  # counted once
    write(tmp_path, 0)
    a.budget.commit(0, SHARD)
    b.budget.release(0)
    assert b.budget.try_reserve(0, SHARD, distance=0) == 0  # resident now


def test_furthest_next_use_goes_first_and_others_needs_protect(tmp_path: Path) -> None:
    a = Process(tmp_path, 3 * SHARD, next_use={0: 5, 1: 50, 2: 500})
    for shard in (0, 1, 2):
        assert a.download(shard)
    assert a.download(3)
    assert resident(tmp_path) == {0, 1, 3}  # 2 was needed furthest away
    assert a.evicted == [2]
    # Another process announces it needs shard 1 next: now 1 is needed sooner than 0 is by a.
    b = Process(tmp_path, 3 * SHARD)
    b.budget.publish(100.0, [(1, 101.0)])
    a.next_use.update({0: 5, 1: 60, 3: 8})
    assert a.download(4)
    # Next uses: 0 -> 5, 1 -> min(60 for a, 1 for b) = 1, 3 -> 8. Without b's need, 1 would have gone.
    assert resident(tmp_path) == {0, 1, 4}


def test_lookahead_never_evicts_a_shard_needed_sooner(tmp_path: Path) -> None:
    a = Process(tmp_path, 2 * SHARD, next_use={0: 10, 1: 20})
    assert a.download(0) and a.download(1)
    # Shard 5 is needed at distance 30: everything resident is needed sooner, so it waits.
    assert not a.download(5, distance=30)
    assert a.budget.statistics().deferrals == 1
    assert resident(tmp_path) == {0, 1}
    # At distance 15 it may displace shard 1 (needed at 20) but not shard 0.
    assert a.download(5, distance=15)
    assert resident(tmp_path) == {0, 5}
    # The shard the consumer waits for (distance 0) displaces anything unpinned.
    a.next_use[5] = 1
    assert a.download(6, distance=0)
    assert 6 in resident(tmp_path)


def test_lookahead_never_evicts_a_shard_needed_within_the_protected_horizon(tmp_path: Path) -> None:
    # Shards 0 and 1 are needed at 40 and 400, both later than the look-ahead shard (distance 30); only 1
    # lies beyond the protected horizon of 100 positions, so only 1 may make room for it.
    a = Process(tmp_path, 2 * SHARD, next_use={0: 40, 1: 400}, protect_within=100)
    assert a.download(0) and a.download(1)
    assert a.download(5, distance=30)
    assert resident(tmp_path) == {0, 5} and a.evicted == [1]
    # Everything resident is needed within the horizon now (5 at 30, 0 at 40): a look-ahead shard at
    # distance 20 waits, although 0 is needed later than it (that second download is what it saves).
    a.next_use[5] = 30
    assert not a.download(6, distance=20)
    assert resident(tmp_path) == {0, 5}
    # Another process's published need within the horizon protects the same way.
    a.next_use.update({0: math.inf, 5: math.inf})
    b = Process(tmp_path, 2 * SHARD)
    b.budget.publish(0.0, [(0, 50.0)])
    assert a.download(6, distance=20)  # 5 is needed by nobody: it goes, 0 stays for b
    assert resident(tmp_path) == {0, 6}
    a.next_use[6] = 10
    assert not a.download(7, distance=20)  # 0 (b's, at 50) and 6 (at 10) are both protected
    assert resident(tmp_path) == {0, 6}
    # The shard the consumer waits for displaces anything unpinned (b waits for room too here, so a does
    # not leave 0 to it: see the next test).
    with b.budget.ledger.transaction() as conns:
        b.budget.ledger.set_waiting(conns, True)
    assert a.download(7, distance=0)
    assert 7 in resident(tmp_path)


def test_a_waiting_consumer_leaves_another_readers_next_shard_to_it(tmp_path: Path) -> None:
    now = [0.0]
    a = Process(tmp_path, 3 * SHARD, next_use={0: 0, 2: 30}, protect_within=100, clock=lambda: now[0])
    b = Process(tmp_path, 3 * SHARD, next_use={1: 0, 2: 10}, protect_within=100, clock=lambda: now[0])
    assert a.download(0) and b.download(1) and a.download(2)
    assert a.pins.pin(0) is not None and b.pins.pin(1) is not None  # each reads its shard
    a.budget.publish(0.0, [(0, 0.0), (2, 30.0)])
    b.budget.publish(0.0, [(1, 0.0), (2, 10.0)])
    # a's consumer needs shard 3 now. The only victim, 2, is b's next shard: evicting it would cost b a
    # second download moments later. b is consuming, not waiting: a waits for b to be done with it.
    assert not a.download(3)
    assert a.budget.statistics().yields == 1 and resident(tmp_path) == {0, 1, 2}
    # b needs shard 4 now, and 2 is a's need - but a waits for room: never waited for, or the two would
    # wait for each other for ever. b evicts 2 and goes on (a full budget, both pinned, no deadlock).
    assert b.download(4) and resident(tmp_path) == {0, 1, 4}
    b.budget.publish(5.0, [(4, 5.0)])
    b.pins.unpin(1)  # b moved to shard 4
    assert a.download(3) and 1 not in resident(tmp_path)  # 1: nobody needs it any more
    a.pins.close()
    b.pins.close()


def test_a_reader_is_waited_for_at_most_yield_for_seconds(tmp_path: Path) -> None:
    # A reader that stopped consuming (a DataLoader worker whose queue is full) cannot stall the others.
    now = [0.0]
    a = Process(tmp_path, 2 * SHARD, protect_within=100, clock=lambda: now[0])
    b = Process(tmp_path, 2 * SHARD)
    assert b.download(0) and b.download(1)
    b.budget.publish(0.0, [(0, 3.0), (1, 4.0)])
    assert not a.download(2)
    now[0] += a.budget.yield_for / 2
    assert not a.download(2)
    now[0] += a.budget.yield_for / 2
    assert a.download(2) and resident(tmp_path) == {0, 2}  # 1, needed later, went


def test_pinned_shards_are_never_evicted_by_any_process(tmp_path: Path) -> None:
    a, b = Process(tmp_path, 2 * SHARD), Process(tmp_path, 2 * SHARD)
    assert a.download(0) and a.download(1)
    assert a.pins.pin(0) is not None and a.pins.pin(1) is not None
    assert b.budget.try_reserve(2, SHARD, distance=0) is None  # both pinned: no room now
    a.pins.unpin(1)
    assert b.download(2)
    assert resident(tmp_path) == {0, 2}
    assert a.pins.pin(1) is None  # evicted: the reader must fetch it again
    a.pins.close()


def test_pin_refuses_a_file_replaced_under_it(tmp_path: Path) -> None:
    write(tmp_path, 0)
    pins = Pins([tmp_path / "shard.00000.mds"])
    first = pins.pin(0)
    assert first is not None
    pins.unpin(0)
    (tmp_path / "shard.00000.mds").unlink()
    write(tmp_path, 0)  # evicted and downloaded again: a new inode
    second = pins.pin(0)
    assert second is not None and second != first
    pins.close()


def test_indexes_count_and_are_never_evicted(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_bytes(b"{}" * 250)
    index = LedgerKey(0, "index.json", ("index.json",))
    budget = NodeBudget(3 * SHARD, Ledger([tmp_path]), keys(), indexes=[(index, 500)])
    budget.open()
    assert budget.usage() == 500
    for shard in range(6):
        assert budget.try_reserve(shard, SHARD, distance=0) == SHARD
        write(tmp_path, shard)
        budget.commit(shard, SHARD)
        assert budget.usage() <= 3 * SHARD
    assert (tmp_path / "index.json").exists()
    with pytest.raises(CacheError, match="may not be evicted"):
        budget.try_reserve(9, 3 * SHARD, distance=0)


def test_open_reconciles_files_and_rows(tmp_path: Path) -> None:
    a = Process(tmp_path, 5 * SHARD)
    assert a.download(0) and a.download(1)
    (tmp_path / "shard.00000.mds").unlink()  # as if a process died between deleting and recording
    write(tmp_path, 7)  # as if a process died between publishing and recording
    b = Process(tmp_path, 5 * SHARD)
    assert b.budget.usage() == 2 * SHARD  # shards 1 and 7


def test_a_waiting_consumer_gets_cache_error_when_pins_never_go(tmp_path: Path) -> None:
    a = Process(tmp_path, 2 * SHARD)
    assert a.download(0) and a.download(1)
    a.pins.pin(0)
    a.pins.pin(1)
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds  # an injected clock: no real waiting

    b = NodeBudget(2 * SHARD, Ledger([tmp_path]), keys(), clock=lambda: now[0], sleep=sleep, stuck_timeout=5)
    b.open()
    with pytest.raises(CacheError, match="too small: shard 2 needs 1000 bytes"):
        asyncio.run(b.reserve(2, SHARD, distance=0))
    assert asyncio.run(b.reserve(2, SHARD, distance=3)) is None  # a look-ahead just reports no room
    b.close()
    a.pins.close()


def _child(tmp_path: Path, body: str) -> subprocess.Popen[bytes]:
    script = (
        textwrap.dedent(
            f"""
        import os, sys, time
        from pathlib import Path
        from astreaming.cache.budget import NodeBudget
        from astreaming.cache.ledger import Ledger, LedgerKey
        from astreaming.cache.pins import Pins
        root = Path({str(tmp_path)!r})
        keys = [LedgerKey(0, f"shard.{{s:05d}}.mds", (f"shard.{{s:05d}}.mds",)) for s in range({SHARDS})]
        budget = NodeBudget({2 * SHARD}, Ledger([root]), keys)
        budget.open()
        pins = Pins([root / k.key for k in keys])
        """
        )
        + textwrap.dedent(body)
        + "\nprint('ready', flush=True)\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def test_a_dead_process_frees_its_pins_reservations_and_temp_files(tmp_path: Path) -> None:
    write(tmp_path, 0)
    proc = _child(
        tmp_path,
        """
        budget.note_present(0)
        assert pins.pin(0)
        assert budget.try_reserve(1, 1000, distance=0) == 1000
        (root / "shard.00001.mds.tmp-123-abcd").write_bytes(b"x" * 600)  # its download in progress
        """,
    )
    a = Process(tmp_path, 2 * SHARD)
    assert a.budget.try_reserve(2, SHARD, distance=0) is None  # the child's pin and reservation fill it
    _kill(proc)
    a.budget._last_sweep = -math.inf  # sweep now (normally at most once a second)
    assert a.download(2)  # the dead reservation is gone; the dead pin no longer protects shard 0...
    assert a.download(3)  # ...so shard 0 can be evicted too
    assert not list(tmp_path.glob("*.tmp-*"))  # the dead download's temp file was removed
    assert not [
        p for p in (tmp_path / ".astreaming" / "owners").iterdir() if p.stem.startswith(str(proc.pid))
    ]


def test_a_process_killed_holding_the_ledger_lock_blocks_nobody(tmp_path: Path) -> None:
    proc = _child(
        tmp_path,
        """
        tx = budget.ledger.transaction()
        conns = tx.__enter__()  # holds the ledger's flock inside an open transaction
        budget.ledger.reserve(conns, keys[5], 999)
        """,
    )
    _kill(proc)
    a = Process(tmp_path, 2 * SHARD)
    assert a.download(0)  # the kernel released the lock; the open transaction was rolled back
    assert a.budget.usage() == SHARD


def test_required_bytes_and_limits() -> None:
    assert required_bytes(fixed=100, largest_raw=10, largest_footprint=15, readers=4) == 100 + 3 * 10 + 15
    assert required_bytes(fixed=0, largest_raw=10, largest_footprint=15, readers=1) == 15
    with pytest.raises(ConfigError, match="cache_limit"):
        NodeBudget(0, Ledger([Path("/nonexistent")]), [])


def test_ledger_survives_fork_in_the_child(tmp_path: Path) -> None:
    a = Process(tmp_path, 3 * SHARD)
    assert a.download(0)
    pid = os.fork()
    if pid == 0:  # the child uses the same objects: it must get its own identity and connection
        code = 0
        try:
            assert a.download(1)
            assert a.budget.ledger.owner.startswith(f"{os.getpid()}-")
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert a.download(2)
    assert resident(tmp_path) == {0, 1, 2}


def test_pins_keep_descriptors_but_never_a_deleted_file(tmp_path: Path) -> None:
    for shard in range(3):
        write(tmp_path, shard)
    pins = Pins([tmp_path / f"shard.{s:05d}.mds" for s in range(3)], max_open=2)
    for shard in range(3):
        assert pins.pin(shard) is not None
        pins.unpin(shard)
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) >= 2
    a = Process(tmp_path, 2 * SHARD)
    assert a.download(5)  # evicts an unpinned shard although this process keeps its descriptor open
    gone = next(s for s in range(3) if not (tmp_path / f"shard.{s:05d}.mds").exists())
    assert pins.pin(gone) is None  # the kept descriptor is of a deleted file: not a pin
    pins.prune()
    pins.close()


def test_lookahead_leaves_headroom_for_the_other_readers(tmp_path: Path) -> None:
    """Look-ahead that filled the last room would be evicted by another reader's sooner need."""
    soon = {0: 5.0, 1: 6.0}  # both needed before the look-ahead shard (at 10)
    budget = NodeBudget(
        4 * SHARD,
        Ledger([tmp_path]),
        keys(),
        next_use=lambda s: soon.get(s, math.inf),
        lookahead_headroom=2 * SHARD,
    )
    budget.open()
    for shard in (0, 1):
        assert budget.try_reserve(shard, SHARD, distance=10) == SHARD  # look-ahead into free room
        write(tmp_path, shard)
        budget.commit(shard, SHARD)
    # Two shards of room are left, but they are the other readers' headroom: look-ahead waits...
    assert budget.try_reserve(2, SHARD, distance=10) is None
    # ...while a shard a reader waits for takes it.
    assert budget.try_reserve(3, SHARD, distance=0) == SHARD
    budget.close()


def test_lookahead_leaves_room_for_the_shards_needed_before_it(tmp_path: Path) -> None:
    """A look-ahead shard may not take the room the consumer's sooner shards will need."""
    order = [4, 5, 6]  # this process needs 4, then 5, then 6
    budget = NodeBudget(
        3 * SHARD,
        Ledger([tmp_path]),
        keys(),
        footprints=[SHARD] * SHARDS,
        sooner=lambda distance: order[: int(distance)],
    )
    budget.open()
    assert budget.try_reserve(6, SHARD, distance=2) == SHARD  # 4 and 5 still fit beside it
    budget.release(6)
    assert budget.try_reserve(7, SHARD, distance=3) is None  # 4, 5 and 6 first: no room for 7 yet
    write(tmp_path, 4)
    assert budget.try_reserve(4, SHARD, distance=0) == SHARD
    budget.commit(4, SHARD)
    order.pop(0)
    assert budget.try_reserve(7, SHARD, distance=1) == SHARD  # 5 missing: 4 + 5 + 7 fit
    budget.close()


def test_jobs_with_different_limits_each_keep_the_directory_under_their_own(tmp_path: Path) -> None:
    big, small = Process(tmp_path, 5 * SHARD), Process(tmp_path, 2 * SHARD)
    for shard in range(5):
        assert big.download(shard)
    assert big.budget.usage() == 5 * SHARD  # the larger job fills the directory to its limit
    assert small.download(7)  # the smaller job evicts until the directory fits its own limit
    assert small.budget.usage() <= 2 * SHARD
    assert len(resident(tmp_path)) == 2
