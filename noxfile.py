"""Developer and CI sessions. Run `nox -s tests node spark lint typecheck` (the README's test command)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# A bare `nox` runs the CI sessions, never the benchmarks.
nox.options.sessions = ["tests", "node", "spark", "lint", "typecheck"]

# The CPU build of torch 2.13.0 installs in seconds; an unpinned torch pulls a multi-GB CUDA build.
TORCH = "torch==2.13.0"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite against real fake servers (fake-gcs-server, moto, Azurite)."""
    # moto must be resolved in the same pip command as aiobotocore, or pip breaks botocore's pin.
    session.install(TORCH, "-e", ".[test]")
    session.run("pytest", "-q", "-m", "not node and not spark", *session.posargs)


@nox.session(python="3.11")
def node(session: nox.Session) -> None:
    """Many processes on one cache: ranks x DataLoader workers x jobs under cache_limit, kill -9, torchrun,
    ranks resuming from their checkpoints, streams on five stores mixed across ranks (and one failing)."""
    session.install(TORCH, "-e", ".[test]")
    session.run(
        "pytest",
        "-q",
        "-m",
        "node",
        "tests/engine/test_node_cache.py",
        "tests/engine/test_crash_matrix.py",
        "tests/engine/test_resume_ranks.py",
        "tests/engine/test_mixed_streams_ranks.py",
        *session.posargs,
    )


@nox.session(python="3.11")
def spark(session: nox.Session) -> None:
    """dataframe_to_mds on pyspark 4 in local mode (Java 17+), local and fake-gcs-server output."""
    session.install(TORCH, "-e", ".[test,spark]")
    session.run("pytest", "-q", "-m", "spark", "tests/spark", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the import-layer contract."""
    session.install(TORCH, "-e", ".[typecheck]")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python="3.11")
def fuzz(session: nox.Session) -> None:
    """The nightly-size fuzz suite: 5,000 hypothesis examples per fuzz test (the default run has 100)."""
    session.install(TORCH, "-e", ".[test]")
    session.env["ASTREAMING_FUZZ_EXAMPLES"] = session.env.get("ASTREAMING_FUZZ_EXAMPLES", "5000")
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=3600", "tests/reliability/test_fuzz.py"
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks with mosaicml-streaming, litdata and webdataset (not part of CI).

    Creates the peers' own venvs (benchmarks/setup_peers.sh), runs `python -m benchmarks` (posargs
    override the default `all`) and draws the charts into benchmarks/results/.
    """
    session.install(TORCH, "-e", ".[test]", "matplotlib")
    session.run("bash", "benchmarks/setup_peers.sh", external=True)
    session.run("python", "-m", "benchmarks", *(session.posargs or ["all"]))
    session.run("python", "benchmarks/plot.py")
