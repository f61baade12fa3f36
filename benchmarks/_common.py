"""Helpers shared by the benchmarks, on both sides: astreaming's and the peers'.

- datasets: :func:`make_sample`, :func:`write_dataset` (N small ~30 B or ~10 KB samples, written with
  astreaming's MDSWriter or mosaic's, same format either way), :func:`ensure_dataset` (reuse one that
  matches), :func:`write_synthetic_index` (a huge index whose shards are hard links to one real shard);
- peers: :func:`run_peer` runs a script of ``benchmarks/peers`` under the peer venv's python (see
  ``setup_peer.sh``) in its own subprocess and returns the JSON it prints;
- timing: :class:`Stopwatch`, :func:`best_of`, :func:`rate`;
- output: :func:`print_table` prints figures and ratios.

Only the standard library is imported at module level: the peer scripts import this module under the peer
venv, where astreaming is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
STUBS_DIR = PEERS_DIR / "stubs"
DEFAULT_PEER_VENV = Path("/work/peer-venv")

COLUMNS = {"id": "int", "text": "str", "blob": "bytes"}
# Bytes in the blob column per kind; with the id (8 B) and text (~13 B) a small sample is ~30 B.
PAYLOADS = {"small": 10, "large": 10_000}
_PATTERN = bytes(range(256)) * (PAYLOADS["large"] // 256 + 2)
MARKER = "bench.json"  # written next to index.json: what the dataset holds, for reuse

T = TypeVar("T")


# --------------------------------------------------------------------------------------------- datasets


def count(text: str | int) -> int:
    """Parse a sample count such as ``200000``, ``"200k"``, ``"1.5M"`` or ``"100m"``."""
    if isinstance(text, int):
        return text
    units = {"k": 10**3, "m": 10**6, "b": 10**9}
    text = text.strip().replace("_", "")
    if text and text[-1].lower() in units:
        return int(float(text[:-1]) * units[text[-1].lower()])
    return int(text)


def make_sample(i: int, kind: str = "small") -> dict[str, Any]:
    """Sample ``i`` of a benchmark dataset: the same on both sides, whichever writer writes it."""
    payload = PAYLOADS[kind]
    start = i % 251
    return {"id": i, "text": f"sample-{i}", "blob": _PATTERN[start : start + payload - (i % 3)]}


def write_dataset(
    out: str | Path, num: int, kind: str = "small", writer: str = "auto", size_limit: int | None = 1 << 26
) -> dict[str, Any]:
    """Write ``num`` samples of ``kind`` as an MDS dataset into the empty or missing directory ``out``.

    Args:
        out: target directory.
        num: number of samples.
        kind: ``"small"`` (~30 B) or ``"large"`` (~10 KB).
        writer: ``"astreaming"``, ``"mosaic"`` (the peer venv's MDSWriter, in a subprocess) or ``"auto"``
            (astreaming if importable here, else mosaic). The bytes are the same either way.
        size_limit: shard size limit in bytes (mosaic's default: 64 MiB); None for a single shard.

    Returns:
        ``{"writer", "samples", "shards", "bytes", "seconds"}``.
    """
    if kind not in PAYLOADS:
        raise ValueError(f"kind must be one of {sorted(PAYLOADS)}, got {kind!r}")
    if writer == "auto":
        writer = "astreaming" if _astreaming_writer_available() else "mosaic"
    out = Path(out)
    began = time.perf_counter()
    if writer == "astreaming":
        from astreaming.format.mds.writer import MDSWriter

        with MDSWriter(out=str(out), columns=COLUMNS, size_limit=size_limit) as w:
            for i in range(num):
                w.write(make_sample(i, kind))
    elif writer == "mosaic":
        args = ["--out", str(out), "--num", str(num), "--kind", kind, "--size-limit", str(size_limit or 0)]
        run_peer("mosaic_write.py", args)
    else:
        raise ValueError(f"writer must be 'astreaming', 'mosaic' or 'auto', got {writer!r}")
    seconds = time.perf_counter() - began
    index = json.loads((out / "index.json").read_text())
    info = {
        "writer": writer,
        "kind": kind,
        "samples": sum(s["samples"] for s in index["shards"]),
        "shards": len(index["shards"]),
        "bytes": sum(s["raw_data"]["bytes"] for s in index["shards"]),
        "seconds": round(seconds, 3),
    }
    if info["samples"] != num:
        raise RuntimeError(f"{out}: wrote {info['samples']} samples, expected {num}")
    return info


def ensure_dataset(
    out: str | Path, num: int, kind: str = "small", writer: str = "auto", size_limit: int | None = 1 << 26
) -> dict[str, Any]:
    """Reuse the dataset at ``out`` if an earlier call wrote the same ``num``, ``kind`` and ``size_limit``,
    else write it (see :func:`write_dataset`)."""
    out = Path(out)
    marker = out / MARKER
    if marker.exists():
        info: dict[str, Any] = json.loads(marker.read_text())
        same = info.get("samples") == num and info.get("kind") == kind
        if same and info.get("size_limit", 1 << 26) == size_limit and (out / "index.json").exists():
            return info
    if out.exists():
        # Only ever delete what this function wrote: a directory with our marker, or an empty one.
        if not marker.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and was not written by ensure_dataset: not overwriting it")
        shutil.rmtree(out)
    info = write_dataset(out, num, kind, writer, size_limit)
    info["size_limit"] = size_limit
    marker.write_text(json.dumps(info))
    return info


_LINKS_PER_FILE = 60_000


def write_synthetic_index(
    out: str | Path, num_samples: int, samples_per_shard: int = 10_000, writer: str = "auto"
) -> dict[str, Any]:
    """A dataset of ``num_samples`` small samples that costs one shard of disk.

    One real shard of ``samples_per_shard`` samples is written; every other shard file is a hard link to
    it, and ``index.json`` lists them all. Every sample can be read (shard ``k`` holds the same bytes as
    shard 0), so loaders can both build the epoch and yield samples, which a bare index could not do.

    Returns:
        ``{"samples", "shards", "index_bytes", "seconds"}``.
    """
    if num_samples <= 0 or num_samples % samples_per_shard:
        # Every shard file holds exactly samples_per_shard samples, so the index must claim as many.
        raise ValueError(f"num_samples ({num_samples}) must be a positive multiple of {samples_per_shard}")
    out = Path(out)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="synthetic-shard-") as tmp:
        write_dataset(Path(tmp) / "one", samples_per_shard, "small", writer, size_limit=None)
        index = json.loads((Path(tmp) / "one" / "index.json").read_text())
        # size_limit=None may still produce a leading empty shard only if the first sample did not fit:
        # it always fits here, so the dataset is exactly one shard.
        (entry,) = index["shards"]
        out.mkdir(parents=True, exist_ok=True)
        source = out / "shard.00000.mds"
        shutil.copyfile(Path(tmp) / "one" / entry["raw_data"]["basename"], source)
    num_shards = num_samples // samples_per_shard
    shards = []
    for k in range(num_shards):
        name = f"shard.{k:05}.mds"
        if k % _LINKS_PER_FILE == 0 and k:
            # A file takes at most 65,000 hard links (ext4): start a new copy of the shard.
            source = out / name
            if not source.exists():
                shutil.copyfile(out / "shard.00000.mds", source)
        elif k:
            target = out / name
            if not target.exists():
                os.link(source, target)
        shard = json.loads(json.dumps(entry))
        shard["raw_data"]["basename"] = name
        shards.append(shard)
    text = json.dumps({"shards": shards, "version": 2}, sort_keys=True)
    (out / "index.json").write_text(text)
    return {
        "samples": num_samples,
        "shards": num_shards,
        "index_bytes": len(text),
        "seconds": round(time.perf_counter() - began, 3),
    }


def _astreaming_writer_available() -> bool:
    try:
        from astreaming.format.mds.writer import MDSWriter  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ peers


def peer_python() -> Path:
    """The peer venv's python: ``$PEER_PYTHON``, else ``$PEER_VENV/bin/python``, else /work/peer-venv's."""
    if os.environ.get("PEER_PYTHON"):
        return Path(os.environ["PEER_PYTHON"])
    return Path(os.environ.get("PEER_VENV", DEFAULT_PEER_VENV)) / "bin" / "python"


_SHM = Path("/dev/shm")
# mosaic's POSIX shm names: a 6-digit prefix, then the segment name (reference §5.2).
_MOSAIC_SHM = re.compile(r"^\d{6}_")


def _mosaic_segments() -> set[str]:
    try:
        return {p.name for p in _SHM.iterdir() if _MOSAIC_SHM.match(p.name)}
    except OSError:
        return set()


def run_peer(
    script: str, args: Sequence[str] = (), timeout: float = 1800.0, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``benchmarks/peers/<script>`` with the peer python in a fresh subprocess; return its JSON.

    The script prints one JSON object as its last stdout line. It runs with a private ``TMPDIR`` (mosaic
    leaves lock files there and never deletes them) that is removed afterwards, and any mosaic
    ``/dev/shm`` segment that appeared during the run and outlived it is unlinked and reported under
    ``"leaked_shm"`` (the script already calls mosaic's own cleanup; this is the safety net). ``env``
    adds variables to the inherited environment (e.g. an S3 endpoint).

    Raises:
        FileNotFoundError: the peer venv is missing (run ``benchmarks/setup_peer.sh``).
        RuntimeError: the script failed or printed no JSON; its stderr tail is in the message.
    """
    python = peer_python()
    if not python.exists():
        raise FileNotFoundError(f"peer python {python} not found: run `bash benchmarks/setup_peer.sh` first")
    path = PEERS_DIR / script
    before = _mosaic_segments()
    tmp = tempfile.mkdtemp(prefix="peer-run-")
    full_env = dict(os.environ, **(env or {}), TMPDIR=tmp)
    # Also on PYTHONPATH, not only on the scripts' sys.path: spawned DataLoader workers need the stand-in.
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STUBS_DIR), str(BENCH_DIR)) if p)
    try:
        proc, peak_mb = run_measured([str(python), str(path), *args], env=full_env, timeout=timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        leaked = sorted(_mosaic_segments() - before)
        for name in leaked:
            (_SHM / name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            result["leaked_shm"] = leaked
            result["peak_tree_rss_mb"] = peak_mb
            return result
    tail = proc.stdout[-2000:] + proc.stderr[-2000:]
    raise RuntimeError(f"{script} {' '.join(args)} printed no JSON:\n{tail}")


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass  # the process exited while we sampled it: it holds no memory any more
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass  # the process (or one of its threads) exited while we listed it: no children to add
    return out


def _tree(root: int) -> list[int]:
    """``root`` and every process descending from it (/proc's children lists)."""
    out, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in _children(pid)]
        out += frontier
    return out


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800.0,
    every: float = 0.05,
    kill_group: bool = True,
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``argv``; return its completed process and the peak RSS (MB) of its whole process tree.

    The tree (the process, its DataLoader workers, their helpers) is sampled every ``every`` seconds from
    /proc and the RSS of its members summed: pages shared between processes (fork's copy-on-write, mapped
    files, shared memory) count once per process, for every loader alike.

    With ``kill_group`` (the default) the process starts in a session of its own, and whatever of its
    process group is left when it ended (or when this function failed or was interrupted) is killed: a
    benchmark child that ends with ``os._exit``, or a peer that leaves its DataLoader workers behind, must
    not leave them loading the machine for the runs after it.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            argv,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=kill_group,
        )
        peak = 0
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                peak = max(peak, sum(_rss_kb(pid) for pid in _tree(proc.pid)))
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise subprocess.TimeoutExpired(argv, timeout)
                time.sleep(every)
        finally:
            if kill_group:
                # The group outlives its leader while a member lives: its id stays reserved till then.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())
    return done, peak / 1024


def mosaic_iter(
    data: str | Path,
    *,
    mode: str = "plain",
    batch_size: int = 256,
    workers: int = 2,
    limit: int = 0,
    shuffle: bool = False,
) -> dict[str, Any]:
    """mosaic's epoch over the local MDS dataset ``data`` (``peers/mosaic_iter.py``); see its docstring.

    Returns its JSON: ``samples``, ``seconds``, ``samples_per_s``, ``init_s``, ``first_sample_s``, ...
    """
    args = ["--data", str(data), "--mode", mode, "--batch-size", str(batch_size), "--workers", str(workers)]
    args += ["--limit", str(limit)] + (["--shuffle"] if shuffle else [])
    return run_peer("mosaic_iter.py", args)


def mosaic_resume(
    data: str | Path, sample_in_epoch: int, *, batch_size: int = 32, shuffle: bool = True
) -> dict[str, Any]:
    """mosaic's checkpoint at ``sample_in_epoch`` of epoch 0, then a resume from it in a new process.

    Returns ``{"save": <phase 1 JSON>, "resume": <phase 2 JSON>, "resume_total_s": init + load + first
    sample of the resumed process}`` (see ``peers/mosaic_resume.py``).
    """
    common = ["--data", str(data), "--batch-size", str(batch_size)] + ([] if shuffle else ["--no-shuffle"])
    save = run_peer("mosaic_resume.py", [*common, "--save", str(sample_in_epoch)])
    resume = run_peer("mosaic_resume.py", [*common, "--state", json.dumps(save["state"])])
    total = resume["init_s"] + resume["load_state_dict_s"] + resume["first_sample_s"]
    return {"save": save, "resume": resume, "resume_total_s": total}


# ----------------------------------------------------------------------------------------------- timing


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (perf_counter)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def best_of(fn: Callable[[], T], repeat: int = 3) -> tuple[float, T]:
    """Call ``fn`` ``repeat`` times; return the shortest wall time and the last result."""
    best = float("inf")
    result: Any = None
    for _ in range(max(1, repeat)):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def rate(items: int, seconds: float) -> float:
    """Items per second (inf for a zero duration)."""
    return items / seconds if seconds > 0 else float("inf")


# ----------------------------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    ratio: tuple[str, str] | None = None,
    file: Any = None,
) -> None:
    """Print ``rows`` as an aligned table, optionally with a ratio column.

    Args:
        rows: one mapping per line; missing cells print empty.
        columns: which keys, in order (default: every key, in first-seen order).
        ratio: ``(value_key, baseline_name)``: adds ``x <baseline>`` = row[value_key] / the value_key of
            the row whose ``name`` is ``baseline_name`` (e.g. ``("samples_per_s", "mosaic bs256")``).
        file: where to print (default stdout).
    """
    out = file or sys.stdout
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    columns = list(columns)
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    if ratio is not None:
        key, base_name = ratio
        base = next((r.get(key) for r in rows if r.get("name") == base_name), None)
        columns.append(f"x {base_name}")
        for row, line in zip(rows, cells, strict=True):
            value = row.get(key)
            ok = isinstance(value, int | float) and isinstance(base, int | float) and base
            line.append(f"{value / base:.2f}x" if ok else "")  # type: ignore[operator]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for line in cells:
        # Names left-aligned, figures right-aligned.
        padded = [v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True))]
        print("  ".join(padded).rstrip(), file=out)
