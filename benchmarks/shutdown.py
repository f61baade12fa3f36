"""Shutdown times: after a download failure and on Ctrl-C, StreamingDataLoader vs plain torch.

    python benchmarks/shutdown.py [--runs 5] [--load N] [--only teardown|sigint]

1. **Teardown after a failed download** (2 workers, fork and spawn): a remote with one shard missing.
   Measured from the start of the ``next()`` that raises to the end of ``del loader; gc.collect()``
   (the error's delivery from the worker is in both columns). The same StreamingDataset is read by
   ``StreamingDataLoader`` and by a plain ``torch.utils.data.DataLoader``.
2. **Ctrl-C with 2 workers**, each waiting for data: a child process iterates; once it has a batch, the
   parent sends SIGINT to its process group (as a terminal's Ctrl-C does) or to the main process only,
   and times until the child has exited. astreaming: StreamingDataLoader over an HTTP remote (served by
   this process, not the measured one) whose later shards never answer; plain torch: a DataLoader over
   an IterableDataset whose workers sleep.

``--load N`` keeps N busy processes (a Python loop each) running for the whole run, so that both
loaders are measured on the same loaded machine; the 1-minute load average is printed at the end.

Prints one table row per case: median and range over ``--runs`` runs, in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _write(out: Path, n: int) -> Path:
    from astreaming import MDSWriter

    with MDSWriter(out=str(out), columns={"id": "int"}, size_limit=200) as w:
        for i in range(n):
            w.write({"id": i})
    return out


def teardown(kind: str, context: str, root: Path, run: int) -> float:
    from torch.utils.data import DataLoader

    from astreaming import StreamingDataLoader, StreamingDataset

    ds = StreamingDataset(
        remote=str(root), local=str(root.parent / f"c-{kind}-{context}-{run}"), batch_size=4, download_retry=0
    )
    cls: Any = StreamingDataLoader if kind == "astreaming" else DataLoader
    loader = cls(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            next(iterator)
        except Exception:
            break
    del iterator, loader
    gc.collect()
    return time.perf_counter() - start


# -- Ctrl-C ---------------------------------------------------------------------------------------------


class _Sleepy:
    """A plain torch IterableDataset whose workers yield one batch, then wait for data forever."""

    def __iter__(self) -> Any:
        yield from range(4)
        time.sleep(3600)


def _stalling_server(root: Path) -> str:
    from aiohttp import web

    box: list[int] = []
    ready = threading.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = root / request.path.lstrip("/")
        if path.name.startswith("shard.") and int(path.name.split(".")[1]) > 1:
            await asyncio.sleep(3600)
        return web.FileResponse(path)

    def serve() -> None:
        loop = asyncio.new_event_loop()

        async def setup() -> None:
            app = web.Application()
            app.router.add_get("/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            box.append(runner.addresses[0][1])

        loop.run_until_complete(setup())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait()
    return f"http://127.0.0.1:{box[0]}"


def child(kind: str, url: str) -> None:
    # Started from a shell's background job, SIGINT would be ignored (and inherited so): Ctrl-C's way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from torch.utils.data import DataLoader

    if kind == "astreaming":
        from astreaming import StreamingDataLoader, StreamingDataset

        ds = StreamingDataset(remote=f"{url}/ds", local=tempfile.mkdtemp(), batch_size=2, predownload=2)
        loader: Any = StreamingDataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    else:
        import torch.utils.data

        class Sleepy(_Sleepy, torch.utils.data.IterableDataset):  # type: ignore[type-arg,misc]
            pass

        loader = DataLoader(Sleepy(), batch_size=2, num_workers=2, multiprocessing_context="fork")
    for _ in loader:
        print("BATCH", flush=True)


def ctrl_c(kind: str, url: str, group: bool) -> float:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.5)  # let the workers settle into their wait
    start = time.perf_counter()
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    proc.wait()
    return time.perf_counter() - start


def _row(name: str, times: list[float]) -> str:
    return f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} to {max(times):.2f} |"


def _busy(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load", type=int, default=0, help="busy processes running meanwhile")
    parser.add_argument("--only", choices=("teardown", "sigint"))
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    busy = _busy(args.load)
    try:
        rows = measure(args.runs, args.only)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print("\n".join(rows))
    print(f"load: {args.load} busy processes; 1-minute load average at the end {os.getloadavg()[0]:.1f}")


def measure(runs: int, only: str | None) -> list[str]:
    rows = ["| case | median s | range s |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        root = _write(Path(tmp) / "ds", 400)
        (root / "shard.00005.mds").unlink()
        for context in ("fork", "spawn") if only != "sigint" else ():
            for kind in ("astreaming", "torch"):
                times = [teardown(kind, context, root, r) for r in range(runs)]
                rows.append(_row(f"failed download, {context}: {kind}", times))
                print(rows[-1], flush=True)
        site = Path(tmp) / "site"
        _write(site / "ds", 400)
        url = _stalling_server(site)  # in this process: the measured one holds only its loader
        for group in (True, False) if only != "teardown" else ():
            # Run by run, the two loaders alternate: both see the same load.
            times: dict[str, list[float]] = {"astreaming": [], "torch": []}
            for _ in range(runs):
                for kind in times:
                    times[kind].append(ctrl_c(kind, url, group))
            target = "process group" if group else "main process only"
            for kind, measured in times.items():
                rows.append(_row(f"SIGINT to {target}: {kind}", measured))
                print(rows[-1], flush=True)
            ratios = [a / t for a, t in zip(times["astreaming"], times["torch"], strict=True)]
            rows.append(
                f"| SIGINT to {target}: astreaming / torch, run by run | "
                f"{statistics.median(ratios):.2f} | {min(ratios):.2f} to {max(ratios):.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
