"""``astreaming demo`` run as a user runs it: output, exit codes, cleanup (also on Ctrl-C and SIGTERM)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import CLI, RunCLI, cli_env, leftovers

# Small and fast: a few hundred kB over an unthrottled loopback link.
FAST = (
    "--samples",
    "3000",
    "--sample-bytes",
    "200",
    "--shard-bytes",
    "60000",
    "--latency",
    "0",
    "--bandwidth",
    "0",
)


def _find(pattern: str, text: str) -> str:
    """The first group of ``pattern`` in ``text`` (a line of the demo's report)."""
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.group(1)


def _workdir(stdout: str) -> Path:
    match = re.search(r"^working directory: (\S+)", stdout, re.MULTILINE)
    assert match, stdout
    return Path(match.group(1))


def test_demo_fast_link_passes_and_cleans_up(run_cli: RunCLI, cli_tmp: Path) -> None:
    proc = run_cli("demo", *FAST, "--batch-size", "32")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    shards = int(_find(r"wrote (\d+) MDS shards", out))
    assert shards >= 8  # 3000 x ~220 B over 60 kB shards: the epoch streams many shards
    assert re.search(r"verified\s+3,000/3,000 samples", out), out
    # Each shard crosses the link exactly once, plus the index (one request each).
    assert re.search(rf"link\s+{shards + 1} requests", out), out
    assert re.search(rf"ds\.stats\(\)\s+bytes_downloaded=\d+ shards_downloaded={shards} ", out), out
    assert "warm epoch (from the cache)" in out
    # No shard crosses the link again; the index's check (a stat, and its bytes once) is all there is.
    assert re.search(r"warm epoch \(from the cache\): .*, 0 shard requests", out), out
    # Resume: 3000 // 32 // 3 = 31 batches of 32 before the checkpoint; the other 2008 samples after it.
    assert "'sample_in_epoch': 992" in out
    assert "its 2,008 samples equal the cold epoch's tail" in out
    last = out.rstrip().splitlines()
    assert last[-2] == "demo OK: every check passed"
    assert last[-1].startswith("next: convert your own data with astreaming convert SRC OUT")
    assert not _workdir(out).exists()
    assert leftovers(cli_tmp) == []


def test_demo_slow_link_respects_the_floor(run_cli: RunCLI, cli_tmp: Path) -> None:
    # ~0.55 MB compressed through a 5 MB/s link: at least ~0.11 s whatever the machine does.
    proc = run_cli(
        "demo",
        *("--samples", "2000", "--sample-bytes", "512", "--shard-bytes", "50000"),
        *("--latency", "0.005", "--bandwidth", "5", "--workers", "2"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    ratio = float(_find(r"epoch\s+\S+ \S+\s+= ([\d.]+) x floor", out))
    # The proxy really throttles: an epoch cannot beat bytes / bandwidth (small slack for its burst).
    assert ratio >= 0.9, out
    assert "time to first batch" in out  # with workers the loader hands over whole batches
    assert "counted in the 2 worker processes" in out
    assert "demo OK" in out
    assert leftovers(cli_tmp) == []


def test_demo_rides_out_injected_faults(run_cli: RunCLI, cli_tmp: Path) -> None:
    proc = run_cli("demo", *FAST, "--error-rate", "0.1", "--reset-rate", "0.1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    errors = int(_find(r"(\d+) error responses and \d+ resets injected", out))
    resets = int(_find(r"\d+ error responses and (\d+) resets injected", out))
    retries = int(_find(r"ds\.stats\(\).* retries=(\d+)", out))
    assert errors + resets > 0
    assert retries >= errors + resets  # every injected failure was retried, none was fatal or skipped
    assert re.search(r"verified\s+3,000/3,000 samples", out), out
    assert "demo OK" in out
    assert proc.stderr == ""  # the expected retries are counted, not logged (see --verbose)


def test_demo_keep_directory(run_cli: RunCLI, tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    proc = run_cli("demo", *FAST, "--keep", keep)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (keep / "dataset" / "index.json").is_file()
    assert any((keep / "cache").glob("shard.*.mds"))
    # The closing line suggests commands on the kept dataset; they work on it as printed.
    assert proc.stdout.rstrip().splitlines()[-1].startswith(f"next: astreaming verify {keep / 'dataset'};")
    verified = run_cli("verify", keep / "dataset")
    assert verified.returncode == 0 and ", 0 bad" in verified.stdout
    planned = run_cli("plan", keep / "dataset", "--nodes", "2", "--ranks-per-node", "8")
    assert planned.returncode == 0 and "2 nodes x 8 ranks" in planned.stdout
    # A second run into the same directory is refused (its cache would make the cold epoch warm)
    # and leaves the first run's files alone.
    before = sorted(p.name for p in (keep / "dataset").iterdir())
    again = run_cli("demo", *FAST, "--keep", keep)
    assert again.returncode == 1
    assert str(keep) in again.stderr
    assert sorted(p.name for p in (keep / "dataset").iterdir()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--samples", "0"), "--samples must be >= 1"),
        (("--bandwidth", "-1"), "--bandwidth must be >= 0"),
        (("--batch-size", "0"), "--batch-size must be >= 1"),
    ],
)
def test_demo_bad_arguments(run_cli: RunCLI, args: tuple[str, ...], message: str) -> None:
    proc = run_cli("demo", *args)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.stdout == ""


def test_demo_detects_a_wrong_sample(cli_tmp: Path) -> None:
    # Write one sample whose payload belongs to another id; the demo must notice and fail.
    script = (
        "import sys\n"
        "import astreaming.cli.demo_data as d\n"
        "orig = d._payloads\n"
        "def bad(start, count, sample_bytes, seed):\n"
        "    rows = orig(start, count, sample_bytes, seed)\n"
        "    if start == 0:\n"
        "        rows[7, 0] ^= 0xFF\n"
        "    return rows\n"
        "d._payloads = bad\n"
        "from astreaming.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "demo", *FAST],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(cli_tmp),
        check=False,
    )
    assert proc.returncode == 1, proc.stdout
    assert "sample 7: payload belongs to another sample" in proc.stderr
    assert "demo OK" not in proc.stdout
    # The epoch stopped at the bad sample: like an interrupted one, it keeps its plan artefacts for a
    # resumption on this node (a walk discards them when it runs to its end); nothing else is left.
    assert leftovers(cli_tmp, resumable=True) == []


@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGINT, "0"), (signal.SIGTERM, "2")])
def test_demo_interrupted_cleans_up(cli_tmp: Path, sig: signal.Signals, workers: str) -> None:
    # 0.5 MB/s: the cold epoch of ~4 MB lasts about 8 s, so the signal lands mid-download even when a
    # loaded machine delays this process's half-second wait.
    argv = [
        *CLI,
        "demo",
        "--samples",
        "2000",
        "--shard-bytes",
        "200000",
        "--bandwidth",
        "0.5",
        "--workers",
        workers,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(cli_tmp)
    )
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[3/5]"):
                break
        time.sleep(0.5)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(sig)
        # Bounded, not timed: how fast workers stop is measured in benchmarks/shutdown.py.
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not _workdir("".join(lines)).exists()
    assert leftovers(cli_tmp, resumable=True) == []


_SIGNAL_IN_A_FORK = """
import multiprocessing, os, signal, sys, time
from astreaming.cli.demo import _sigterm_as_interrupt, inside_fork

seen = []


def hook():
    if os.environ.get("ARMED") == str(os.getpid()) and not seen:
        seen.append(inside_fork(sys._getframe()))
        signal.raise_signal(signal.SIGTERM)  # the handler runs here, inside the fork's hook


os.register_at_fork(before=hook)
print("outside", inside_fork(sys._getframe()))
with _sigterm_as_interrupt():
    try:
        os.environ["ARMED"] = str(os.getpid())
        child = multiprocessing.get_context("fork").Process(target=int)
        child.start()
        child.join()
        deadline = time.monotonic() + 60  # only a lost signal gets this far
        while time.monotonic() < deadline:
            time.sleep(0.01)
        print("lost")
    except KeyboardInterrupt:
        print("interrupted", seen)
"""


def test_a_signal_inside_a_fork_is_delivered_after_it() -> None:
    # A SIGTERM (or Ctrl-C) that lands in an at-fork hook while torch forks a worker would be printed as
    # "Exception ignored" and lost; the demo delivers it again once the fork is over.
    argv = [sys.executable, "-c", _SIGNAL_IN_A_FORK]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["outside False", "interrupted [True]"], proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr
