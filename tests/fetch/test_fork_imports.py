"""A fork waits for other threads' imports, so the child never gets a half-imported module.

Each case runs in a fresh interpreter (a module imported once per process is the subject), with a module
of its own written to ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest

from astreaming.fetch import forkimports

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, script: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_fork_during_another_threads_import_hands_the_child_the_whole_module(tmp_path: Path) -> None:
    # A module that takes a while to import, and says when it started.
    (tmp_path / "started.py").write_text("import threading\nevent = threading.Event()\n")
    (tmp_path / "slowmod.py").write_text(
        "import started, time\nstarted.event.set()\ntime.sleep(0.3)\nDONE = True\n"
    )
    out = _run(
        tmp_path,
        """
        import multiprocessing, threading
        import astreaming.fetch.loop_thread  # what every process that streams imports
        import started

        def child(queue):
            import slowmod
            queue.put(getattr(slowmod, "DONE", "partially initialized"))

        threading.Thread(target=lambda: __import__("slowmod")).start()
        started.event.wait()  # the import is under way in the other thread
        ctx = multiprocessing.get_context("fork")  # as torch forks its DataLoader workers
        queue = ctx.Queue()
        process = ctx.Process(target=child, args=(queue,), daemon=True)  # a hung child ends with us
        process.start()
        print(queue.get(timeout=30))  # a child stuck in the import never answers
        process.join()
        """,
    )
    assert out == "True"


def test_a_fork_made_while_importing_does_not_wait_for_its_own_import(tmp_path: Path) -> None:
    # A module that forks at import time (a script starting workers at its top level).
    (tmp_path / "forker.py").write_text(
        textwrap.dedent(
            """
            import os
            from astreaming.fetch import forkimports
            OWN = forkimports.importing_elsewhere()  # this thread's import of forker: not counted
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            """
        )
    )
    assert _run(tmp_path, "import forker; print(forker.OWN)") == "[]"


def test_the_wait_is_bounded_and_ends_with_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module whose import another thread holds until this test lets it go.
    release, inside = threading.Event(), threading.Event()
    gate = types.ModuleType("forkimports_gate")
    gate.release, gate.inside = release, inside  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "forkimports_gate", gate)
    (tmp_path / "held_import.py").write_text(
        "import forkimports_gate as g\ng.inside.set()\ng.release.wait(60)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "held_import", raising=False)
    importer = threading.Thread(target=lambda: __import__("held_import"))
    importer.start()
    try:
        assert inside.wait(60)
        assert "held_import" in forkimports.importing_elsewhere()
        now = [0.0]
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        assert forkimports.wait_for_imports(0.5, clock=lambda: now[0], sleep=sleep) is False
        assert now[0] >= 0.5 and slept  # it waited, on the injected clock, until the bound
        # An import that outlived a whole wait is not waited for again (the next fork goes ahead).
        slept.clear()
        ignore = {"held_import"}
        assert forkimports.wait_for_imports(0.5, ignore=ignore, clock=lambda: now[0], sleep=sleep) is True
        assert slept == []
        # The fork hook records such an import once its wait ran out.
        monkeypatch.setattr(forkimports, "_stuck", set())
        monkeypatch.setattr(forkimports, "WAIT", 0.01)
        forkimports._before_fork()
        assert forkimports._stuck == {"held_import"}
    finally:
        release.set()
        importer.join(60)
    assert forkimports.importing_elsewhere() == []
    assert forkimports.wait_for_imports(0.5) is True
