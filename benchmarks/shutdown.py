"""Shutdown times: after a download failure and on Ctrl-C, StreamingDataLoader vs plain torch.

    python benchmarks/shutdown.py [--runs 5]

1. **Teardown after a failed download** (2 workers, fork and spawn): a remote with one shard missing.
   Measured from the start of the ``next()`` that raises to the end of ``del loader; gc.collect()``
   (the error's delivery from the worker is in both columns). The same StreamingDataset is read by
   ``StreamingDataLoader`` and by a plain ``torch.utils.data.DataLoader``.
2. **Ctrl-C with 2 workers**, each waiting for data: a child process iterates; once it has a batch, the
   parent sends SIGINT to its process group (as a terminal's Ctrl-C does) or to the main process only,
   and times until the child has exited. astreaming: StreamingDataLoader over an HTTP remote whose
   later shards never answer; plain torch: a DataLoader over an IterableDataset whose workers sleep.

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


def child(kind: str, root: str) -> None:
    from torch.utils.data import DataLoader

    if kind == "astreaming":
        from astreaming import StreamingDataLoader, StreamingDataset

        url = _stalling_server(Path(root))
        ds = StreamingDataset(remote=f"{url}/ds", local=tempfile.mkdtemp(), batch_size=2, predownload=2)
        loader: Any = StreamingDataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    else:
        import torch.utils.data

        class Sleepy(_Sleepy, torch.utils.data.IterableDataset):  # type: ignore[type-arg,misc]
            pass

        loader = DataLoader(Sleepy(), batch_size=2, num_workers=2, multiprocessing_context="fork")
    for _ in loader:
        print("BATCH", flush=True)


def ctrl_c(kind: str, root: Path, group: bool) -> float:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(root)],
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = _write(Path(tmp) / "ds", 400)
        (root / "shard.00005.mds").unlink()
        rows = ["| case | median s | range s |", "|---|---|---|"]
        for context in ("fork", "spawn"):
            for kind in ("astreaming", "torch"):
                times = [teardown(kind, context, root, r) for r in range(args.runs)]
                rows.append(_row(f"failed download, {context}: {kind}", times))
                print(rows[-1], flush=True)
        site = Path(tmp) / "site"
        _write(site / "ds", 400)
        for group in (True, False):
            for kind in ("astreaming", "torch"):
                times = [ctrl_c(kind, site, group) for _ in range(args.runs)]
                target = "process group" if group else "main process only"
                rows.append(_row(f"SIGINT to {target}: {kind}", times))
                print(rows[-1], flush=True)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
