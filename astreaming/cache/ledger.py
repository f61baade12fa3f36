"""The node-wide ledger of one or more cache directories: what is resident, reserved and needed soon.

Every process that uses a cache directory - ranks, DataLoader workers (fork or spawn), other jobs -
shares its ledger through the directory only (DESIGN §9): ``<local>/.astreaming/ledger.sqlite``, a small
SQLite database, written only while holding an exclusive ``flock`` of ``<local>/.astreaming/ledger.lock``.
A dataset whose streams live in several directories locks their ledgers in sorted order, so that one
transaction sees (and may evict across) all of them without deadlocking against another process.

Tables:

* ``files``: a resident shard (or ``index.json``): its key (the path of its first file, relative to the
  directory), total bytes, every path it occupies, whether it may be evicted, and when it was last used.
* ``reservations``: room a download holds before its files exist (the peak of zip plus raw).
* ``owners``: the processes using the directory, each with its position in its own plan.
* ``needs``: the shards each process needs soon, at a position of its plan (for "furthest next use").
* ``waits``: the processes whose consumer waits for room now (nobody leaves a shard to them: see
  :meth:`~astreaming.cache.budget.NodeBudget.try_reserve`).
* ``progress``: how far each process is through its epochs (``epoch + position / plan length``) and when its
  position last moved: who lags behind whom, and who stalled (see :meth:`Ledger.laggards`).
* ``hints``: the next epoch's first needs of DataLoader workers that exited at the end of their epoch
  (non-persistent workers end with each epoch; their successors start moments later and read those
  shards first). Owned by no live process: a hint lives while the worker's parent, which starts the next
  workers, lives (:mod:`astreaming.cache.procid`), at most until its expiry, and until a process of the
  same slot (dataset instance and worker) publishes its own needs. Hints only order eviction: they never
  keep a shard from being evicted when nothing else can go.

A process is alive while it holds an exclusive ``flock`` on ``owners/<token>.lock``; the kernel releases it
when the process dies, so :meth:`Ledger.sweep` can drop the reservations and needs of dead processes at
once, without timeouts. Transactions are atomic (a process killed inside one leaves the database as it
was), and the rows only ever understate what is safe to delete: a file is published before its row is
written and its row is deleted before the file, so a crash in between leaves an unaccounted file (found
again by :meth:`Ledger.reconcile`) or a row without a file (dropped when seen), never a lost shard.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from astreaming.cache.procid import process_alive
from astreaming.crashpoints import crash_point
from astreaming.errors import CacheError

__all__ = [
    "FileRow",
    "Ledger",
    "LedgerKey",
    "fds_closed_after_fork",
    "ledger_dir",
    "owner_token",
    "try_flock",
]

#: Sub-directory of a cache directory that holds the ledger.
LEDGER_DIR = ".astreaming"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY, bytes INTEGER NOT NULL, paths TEXT NOT NULL,
    evictable INTEGER NOT NULL, used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    owner TEXT NOT NULL, key TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (owner, key));
CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, position REAL NOT NULL);
CREATE TABLE IF NOT EXISTS needs (owner TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS waits (owner TEXT PRIMARY KEY, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS progress (owner TEXT PRIMARY KEY, progress REAL NOT NULL, moved REAL NOT NULL);
CREATE TABLE IF NOT EXISTS hints (
    slot TEXT NOT NULL, anchor TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hints_slot ON hints (slot);
CREATE INDEX IF NOT EXISTS needs_key ON needs (key);
CREATE INDEX IF NOT EXISTS needs_owner ON needs (owner);
CREATE INDEX IF NOT EXISTS reservations_key ON reservations (key);
"""

#: Tables whose rows belong to one process (dropped when it leaves or dies).
_OWNED = ("reservations", "needs", "owners", "waits", "progress")


def ledger_dir(root: Path) -> Path:
    """Where the ledger of cache directory ``root`` lives."""
    return root / LEDGER_DIR


@dataclass(frozen=True)
class LedgerKey:
    """How a shard is known in the ledger: its directory, key and every path it may occupy.

    Attributes:
        root: Index of the directory in :attr:`Ledger.roots`.
        key: Path of the shard's first raw file relative to that directory (the pin target).
        paths: Every file of the shard relative to the directory (raw, compressed, meta).
    """

    root: int
    key: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class FileRow:
    """A resident entry of ``files``."""

    root: int
    key: str
    bytes: int
    paths: tuple[str, ...]
    evictable: bool
    used: float


# -- process identity -------------------------------------------------------------------------------------

# Descriptors a forked child inherited and must never use or unlock (closing them is safe: a flock lives
# on while any process holds a descriptor of it, and the parent still does). The pins register theirs.
fds_closed_after_fork: set[int] = set()
_connections: weakref.WeakSet[Ledger] = weakref.WeakSet()


def owner_token() -> str:
    """A fresh ledger identity for this process (each :class:`Ledger` takes its own)."""
    return f"{os.getpid()}-{secrets.token_hex(6)}"


def _after_fork_in_child() -> None:
    # The parent's liveness locks and open ledger lock descriptors must not keep the parent "alive" in
    # the child's name, nor be unlocked by it: close the child's copies.
    for fd in list(fds_closed_after_fork):
        with contextlib.suppress(OSError):
            os.close(fd)
    fds_closed_after_fork.clear()
    for ledger in list(_connections):
        ledger._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def try_flock(fd: int, flags: int) -> bool:
    """Take ``flock(fd, flags)`` without waiting: False when another holder has it (the cache's pins too)."""
    try:
        fcntl.flock(fd, flags | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


class _Dir:
    """One cache directory's ledger files, and this process's handles on them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = ledger_dir(root)
        self.db_path = self.dir / "ledger.sqlite"
        self.lock_path = self.dir / "ledger.lock"
        self.owners_dir = self.dir / "owners"
        self.pid = -1
        self.conn: sqlite3.Connection | None = None
        self.alive_fd: int | None = None

    def open(self, token: str) -> sqlite3.Connection:
        if self.conn is not None and self.pid == os.getpid():
            return self.conn
        try:
            self.owners_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.owners_dir / f"{token}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CacheError(f"cache directory {self.root}: cannot create its ledger: {exc}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)  # our own new file: never contended
        self.alive_fd = fd
        fds_closed_after_fork.add(fd)  # closed in a forked child (see _after_fork_in_child)
        self.conn = self._connect()
        self.pid = os.getpid()
        return self.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=60)
            # Rollback journal, not WAL: WAL needs shared memory, which network filesystems lack; writers
            # are serialised by our flock anyway. No fsync: a process crash loses nothing (the OS has the
            # pages) and after a machine crash the ledger is rebuilt from the files (reconcile).
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA page_size=1024")  # a small file: it sits in the user's cache directory
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"cache ledger {self.db_path}: {exc}") from exc
        return conn

    def forget(self) -> None:
        # After fork: SQLite connections must not be used (or closed) in the child; drop the reference
        # only and let the child open its own.
        self.conn = None
        self.alive_fd = None
        self.pid = -1


class Ledger:
    """One process's handle on the ledgers of a set of cache directories.

    Args:
        roots: The cache directories (each stream's ``local``); several streams may share one.
        clock: Wall-clock seconds for "last used" times (injectable for tests).
    """

    def __init__(self, roots: Sequence[Path], *, clock: object = time.time) -> None:
        self.roots = [Path(r) for r in roots]
        self._dirs = [_Dir(r) for r in self.roots]
        # Lock in one global order (sorted paths) so two processes never wait on each other in a cycle.
        self._lock_order = sorted(range(len(self._dirs)), key=lambda i: str(self._dirs[i].root))
        self._thread_lock = threading.RLock()
        self._clock = clock
        self._owner = owner_token()
        self._owner_pid = os.getpid()
        _connections.add(self)

    def _forget_after_fork(self) -> None:
        for d in self._dirs:
            d.forget()
        self._thread_lock = threading.RLock()

    @property
    def owner(self) -> str:
        """This handle's identity in the ledgers (renewed in a forked child)."""
        if self._owner_pid != os.getpid():
            self._owner, self._owner_pid = owner_token(), os.getpid()
        return self._owner

    def now(self) -> float:
        """The ledger clock."""
        return float(self._clock())  # type: ignore[operator]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[list[sqlite3.Connection]]:
        """Lock every directory's ledger (sorted order), open one transaction on each, commit together."""
        token = self.owner
        with self._thread_lock:
            fds: list[int] = []
            conns: list[sqlite3.Connection | None] = [None] * len(self._dirs)
            try:
                for i in self._lock_order:
                    d = self._dirs[i]
                    conn = d.open(token)
                    fd = os.open(d.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    fds.append(fd)
                    fds_closed_after_fork.add(fd)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    conn.execute("BEGIN IMMEDIATE")
                    conns[i] = conn
                done = [c for c in conns if c is not None]
                yield done
                crash_point("ledger.before_commit")
                for conn in done:
                    conn.execute("COMMIT")
            except BaseException:
                for maybe in conns:
                    if maybe is not None and maybe.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            maybe.execute("ROLLBACK")
                raise
            finally:
                for fd in reversed(fds):
                    # Unlock explicitly: a forked child may hold a copy of this descriptor, and a close
                    # alone would leave the lock held for as long as the child lives.
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    fds_closed_after_fork.discard(fd)
                    os.close(fd)

    # -- queries and updates (call inside transaction(), with its connections) -------------------------

    def usage(self, conns: Sequence[sqlite3.Connection]) -> int:
        """Bytes resident plus reserved over every directory.

        The ledger's own files (a few tens of KB per directory) are bookkeeping, not cache, and are not
        counted, as mosaic does not count its shared memory.
        """
        total = 0
        for conn in conns:
            (resident,) = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM files").fetchone()
            (reserved,) = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM reservations").fetchone()
            total += int(resident) + int(reserved)
        return total

    def resident_bytes(self, conns: Sequence[sqlite3.Connection], key: LedgerKey) -> int | None:
        """Recorded bytes of a resident entry, or None."""
        row = conns[key.root].execute("SELECT bytes FROM files WHERE key = ?", (key.key,)).fetchone()
        return None if row is None else int(row[0])

    def reserved_by_others(self, conns: Sequence[sqlite3.Connection], key: LedgerKey) -> bool:
        """Whether another process holds a reservation for ``key`` (it is downloading it)."""
        row = (
            conns[key.root]
            .execute("SELECT 1 FROM reservations WHERE key = ? AND owner != ? LIMIT 1", (key.key, self.owner))
            .fetchone()
        )
        return row is not None

    def reserved(self, conns: Sequence[sqlite3.Connection], key: LedgerKey) -> bool:
        """Whether any process holds a reservation for ``key``."""
        row = conns[key.root].execute("SELECT 1 FROM reservations WHERE key = ? LIMIT 1", (key.key,))
        return row.fetchone() is not None

    def reserve(self, conns: Sequence[sqlite3.Connection], key: LedgerKey, nbytes: int) -> None:
        """Record this process's reservation of ``nbytes`` for ``key`` (replacing an earlier one)."""
        conns[key.root].execute(
            "INSERT OR REPLACE INTO reservations (owner, key, bytes) VALUES (?, ?, ?)",
            (self.owner, key.key, nbytes),
        )

    def unreserve(self, conns: Sequence[sqlite3.Connection], key: LedgerKey) -> None:
        """Drop this process's reservation for ``key``."""
        conns[key.root].execute("DELETE FROM reservations WHERE owner = ? AND key = ?", (self.owner, key.key))

    def record(
        self, conns: Sequence[sqlite3.Connection], key: LedgerKey, nbytes: int, *, evictable: bool
    ) -> None:
        """Record ``key`` as resident with ``nbytes`` (replacing the size). Non-evictable sticks."""
        conn = conns[key.root]
        row = conn.execute("SELECT evictable FROM files WHERE key = ?", (key.key,)).fetchone()
        keep = evictable and (row is None or bool(row[0]))
        conn.execute(
            "INSERT OR REPLACE INTO files (key, bytes, paths, evictable, used) VALUES (?, ?, ?, ?, ?)",
            (key.key, nbytes, "\n".join(key.paths), int(keep), self.now()),
        )

    def forget(self, conns: Sequence[sqlite3.Connection], root: int, key: str) -> None:
        """Drop a resident entry (its files were deleted, or found missing)."""
        conns[root].execute("DELETE FROM files WHERE key = ?", (key,))
        crash_point("ledger.forget")

    def touch(self, conns: Sequence[sqlite3.Connection], keys: Iterable[LedgerKey]) -> None:
        """Mark entries as used now (the least-recently-used fallback of eviction)."""
        now = self.now()
        for key in keys:
            conns[key.root].execute("UPDATE files SET used = ? WHERE key = ?", (now, key.key))

    def candidates(self, conns: Sequence[sqlite3.Connection]) -> list[FileRow]:
        """Resident, evictable entries nobody is downloading: what eviction may choose from."""
        rows: list[FileRow] = []
        for i, conn in enumerate(conns):
            for key, nbytes, paths, used in conn.execute(
                "SELECT key, bytes, paths, used FROM files WHERE evictable = 1 "
                "AND key NOT IN (SELECT key FROM reservations)"
            ):
                rows.append(FileRow(i, key, int(nbytes), tuple(paths.split("\n")), True, float(used)))
        return rows

    def others_needs(self, conns: Sequence[sqlite3.Connection]) -> dict[tuple[int, str], float]:
        """For each entry other processes need soon: the smallest distance (plan positions) to that need."""
        out: dict[tuple[int, str], float] = {}
        for i, conn in enumerate(conns):
            for key, distance in conn.execute(
                "SELECT n.key, MIN(n.at - o.position) FROM needs n JOIN owners o ON n.owner = o.owner "
                "WHERE n.owner != ? GROUP BY n.key",
                (self.owner,),
            ):
                out[(i, key)] = max(0.0, float(distance))
            # Hints are distances already (the next epoch's position plus LATER): nobody's position to
            # subtract.
            for key, distance in conn.execute(
                "SELECT key, MIN(at) FROM hints WHERE expires > ? GROUP BY key", (self.now(),)
            ):
                out[(i, key)] = min(out.get((i, key), math.inf), float(distance))
        return out

    def needers(self, conns: Sequence[sqlite3.Connection]) -> dict[tuple[int, str], tuple[str, float]]:
        """For each entry other processes need soon: the process that needs it soonest, and the distance."""
        out: dict[tuple[int, str], tuple[str, float]] = {}
        for i, conn in enumerate(conns):
            # SQLite gives the bare column (owner) of the row holding the MIN.
            for key, distance, owner in conn.execute(
                "SELECT n.key, MIN(n.at - o.position), n.owner FROM needs n "
                "JOIN owners o ON n.owner = o.owner WHERE n.owner != ? GROUP BY n.key",
                (self.owner,),
            ):
                out[(i, key)] = (str(owner), max(0.0, float(distance)))
        return out

    def set_waiting(self, conns: Sequence[sqlite3.Connection], waiting: bool) -> None:
        """Record whether this process's consumer waits for room (in every directory)."""
        for conn in conns:
            if waiting:
                conn.execute(
                    "INSERT OR IGNORE INTO waits (owner, since) VALUES (?, ?)", (self.owner, self.now())
                )
            else:
                conn.execute("DELETE FROM waits WHERE owner = ?", (self.owner,))

    def waiting(self, conns: Sequence[sqlite3.Connection]) -> set[str]:
        """The processes whose consumer waits for room now."""
        return {str(o) for conn in conns for (o,) in conn.execute("SELECT owner FROM waits")}

    def publish(
        self,
        conns: Sequence[sqlite3.Connection],
        position: float,
        needs: Sequence[tuple[LedgerKey, float]] | None,
        *,
        progress: float | None = None,
    ) -> None:
        """Replace this process's position and upcoming needs (key, plan position) in every directory
        (``needs`` None: keep the needs recorded last time).

        ``progress`` (epochs done plus the share of the current one, None: unknown) is recorded with the
        time the position last changed.
        """
        now = self.now()
        for conn in conns:
            row = conn.execute("SELECT position FROM owners WHERE owner = ?", (self.owner,)).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO owners (owner, pid, position) VALUES (?, ?, ?)",
                (self.owner, os.getpid(), position),
            )
            if needs is not None:
                conn.execute("DELETE FROM needs WHERE owner = ?", (self.owner,))
            if progress is None:
                conn.execute("DELETE FROM progress WHERE owner = ?", (self.owner,))
            elif row is None or float(row[0]) != position:
                conn.execute(
                    "INSERT OR REPLACE INTO progress (owner, progress, moved) VALUES (?, ?, ?)",
                    (self.owner, progress, now),
                )
            else:  # the same position: keep when it last moved (a stalled process stays stalled)
                conn.execute(
                    "INSERT OR IGNORE INTO progress (owner, progress, moved) VALUES (?, ?, ?)",
                    (self.owner, progress, now),
                )
        for key, at in needs or ():
            conns[key.root].execute(
                "INSERT INTO needs (owner, key, at) VALUES (?, ?, ?)", (self.owner, key.key, at)
            )

    def laggards(
        self, conns: Sequence[sqlite3.Connection], progress: float, *, moved_since: float, horizon: float
    ) -> set[tuple[int, str]]:
        """Entries needed by a process behind ``progress`` that moved since ``moved_since``, within
        ``horizon`` positions of its current position.

        A lagging process waiting for room is still waited for while it moves: it never waits for a
        process ahead of it (only for one behind, which is a strict order, so no cycle), and what it
        waits for is room the leading process's evictions would take.
        """
        out: set[tuple[int, str]] = set()
        for i, conn in enumerate(conns):
            for (key,) in conn.execute(
                "SELECT DISTINCT n.key FROM needs n JOIN owners o ON n.owner = o.owner "
                "JOIN progress p ON n.owner = p.owner "
                "WHERE n.owner != ? AND p.progress < ? AND p.moved > ? AND n.at - o.position < ?",
                (self.owner, progress, moved_since, horizon),
            ):
                out.add((i, str(key)))
        return out

    def leave_hints(
        self,
        conns: Sequence[sqlite3.Connection],
        slot: str,
        anchor: str,
        hints: Sequence[tuple[LedgerKey, float]],
        *,
        ttl: float,
    ) -> None:
        """Replace the hints of ``slot``: shards needed at these distances by a successor that
        ``anchor`` (a :func:`~astreaming.cache.procid.process_tag`) will start, for at most ``ttl`` s."""
        self.drop_hints(conns, slot)
        expires = self.now() + ttl
        for key, at in hints:
            conns[key.root].execute(
                "INSERT INTO hints (slot, anchor, key, at, expires) VALUES (?, ?, ?, ?, ?)",
                (slot, anchor, key.key, at, expires),
            )

    def drop_hints(self, conns: Sequence[sqlite3.Connection], slot: str) -> None:
        """Drop the hints of ``slot`` (its successor publishes its own needs)."""
        for conn in conns:
            conn.execute("DELETE FROM hints WHERE slot = ?", (slot,))

    def _sweep_hints(self, conn: sqlite3.Connection) -> None:
        """Drop expired hints, and those whose anchor process is gone (no successor will come)."""
        conn.execute("DELETE FROM hints WHERE expires <= ?", (self.now(),))
        for (anchor,) in conn.execute("SELECT DISTINCT anchor FROM hints").fetchall():
            if not process_alive(str(anchor)):
                conn.execute("DELETE FROM hints WHERE anchor = ?", (anchor,))

    def withdraw(self, conns: Sequence[sqlite3.Connection]) -> None:
        """Remove this process's reservations, needs and owner row (it stops using the cache)."""
        for conn in conns:
            for table in _OWNED:
                conn.execute(f"DELETE FROM {table} WHERE owner = ?", (self.owner,))

    def sweep(self, conns: Sequence[sqlite3.Connection]) -> list[tuple[int, str]]:
        """Drop the rows of dead processes (their liveness lock is free). Returns their reserved keys."""
        orphans: list[tuple[int, str]] = []
        for i, (d, conn) in enumerate(zip(self._dirs, conns, strict=True)):
            self._sweep_hints(conn)
            owners = {o for (o,) in conn.execute("SELECT owner FROM reservations")}
            owners |= {o for (o,) in conn.execute("SELECT owner FROM owners")}
            owners |= {o for (o,) in conn.execute("SELECT owner FROM needs")}
            owners |= {o for (o,) in conn.execute("SELECT owner FROM waits")}
            owners |= {o for (o,) in conn.execute("SELECT owner FROM progress")}
            with contextlib.suppress(FileNotFoundError):
                owners |= {p.stem for p in d.owners_dir.iterdir() if p.suffix == ".lock"}
            for owner in owners:
                if owner == self.owner or _alive(d.owners_dir / f"{owner}.lock"):
                    continue
                orphans += [
                    (i, k) for (k,) in conn.execute("SELECT key FROM reservations WHERE owner = ?", (owner,))
                ]
                for table in _OWNED:
                    conn.execute(f"DELETE FROM {table} WHERE owner = ?", (owner,))
                with contextlib.suppress(FileNotFoundError):
                    (d.owners_dir / f"{owner}.lock").unlink()
        return orphans

    def keys_recorded(self, conns: Sequence[sqlite3.Connection], root: int) -> set[str]:
        """Every key recorded resident in one directory."""
        return {k for (k,) in conns[root].execute("SELECT key FROM files")}

    def close(self, leaving: Callable[[list[sqlite3.Connection]], None] | None = None) -> None:
        """Withdraw this process and close its handles (idempotent; a no-op after fork).

        ``leaving``, if given, runs in the same transaction as the withdrawal (e.g. to leave hints).
        """
        opened = [d for d in self._dirs if d.conn is not None and d.pid == os.getpid()]
        if not opened:
            return
        with contextlib.suppress(sqlite3.Error, OSError), self.transaction() as conns:
            self.withdraw(conns)
            if leaving is not None:
                leaving(conns)
        for d in opened:
            assert d.conn is not None
            d.conn.close()
            if d.alive_fd is not None:
                fds_closed_after_fork.discard(d.alive_fd)
                fcntl.flock(d.alive_fd, fcntl.LOCK_UN)
                os.close(d.alive_fd)
                with contextlib.suppress(FileNotFoundError):
                    (d.owners_dir / f"{self.owner}.lock").unlink()
            d.forget()


def _alive(lock: Path) -> bool:
    """Whether the process owning liveness lock ``lock`` still runs (it holds the flock)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if try_flock(fd, fcntl.LOCK_EX):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)
