"""One library, one measurement, one fresh process: the runner behind ``python -m benchmarks``.

Runs under the python of the library's own environment (astreaming's venv, the mosaic peer venv, or the
litdata/webdataset peer venv: see ``setup_peers.sh``) and prints one JSON line. Each library reads its own
native format, written by its own writer (``--op write``):

- ``astreaming``: MDS by ``astreaming.MDSWriter``; read with ``StreamingDataset`` / ``StreamingDataLoader``;
- ``mosaic``: MDS by ``streaming.MDSWriter`` 0.13.0; read with its ``StreamingDataset`` and a torch
  ``DataLoader``;
- ``litdata``: litdata chunks by its ``BinaryWriter``; read with ``litdata.StreamingDataset`` /
  ``litdata.StreamingDataLoader``;
- ``webdataset``: tar shards by ``wds.ShardWriter``; read with ``wds.WebDataset(...).decode()`` (batched
  in the pipeline for the DataLoader, as webdataset recommends).

Every sample read is checked inside the timed loop: the count, the sum of ids and the sum of a CRC-32 of
each sample's id, text and blob bytes (order-independent); the orchestrator compares them with the values
computed from ``_common.make_sample``.

    python run_lib.py --lib litdata --op write --data DIR --kind small --num 200000 --per-shard 10000
    python run_lib.py --lib litdata --op iter --data DIR --mode loader --batch-size 256 --workers 2
    python run_lib.py --lib astreaming --op first --data DIR
    python run_lib.py --lib webdataset --op remote --urls FILE   (a JSON list of shard URLs)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402


class Check:
    """Count, id sum and CRC sum of the samples seen (order-independent)."""

    def __init__(self) -> None:
        self.count = 0
        self.id_sum = 0
        self.crc_sum = 0

    def add(self, ident: int, text: str, blob: Any) -> None:
        # crc32 reads any buffer (bytes, memoryview, numpy), so no copy is made here for any library.
        self.crc_sum += zlib.crc32(blob, zlib.crc32(text.encode(), ident & 0xFFFFFFFF))
        self.id_sum += ident
        self.count += 1

    def add_batch(self, ids: Any, texts: Iterable[str], blobs: Iterable[Any]) -> int:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        for ident, text, blob in zip(ids, texts, blobs, strict=True):
            self.add(int(ident), text, blob)
        return len(ids)

    def result(self) -> dict[str, int]:
        return {"samples": self.count, "id_sum": self.id_sum, "crc_sum": self.crc_sum}


def expected(num: int, kind: str) -> dict[str, int]:
    """What :class:`Check` must report for samples ``0..num-1`` of ``kind``."""
    check = Check()
    for i in range(num):
        s = _common.make_sample(i, kind)
        check.add(s["id"], s["text"], s["blob"])
    return check.result()


# ------------------------------------------------------------------------------------------------ write


def write(lib: str, out: Path, num: int, kind: str, per_shard: int) -> dict[str, Any]:
    """Write samples ``0..num-1`` in ``lib``'s native format, ``per_shard`` samples per shard (or the
    MDS byte limit that gives it, for the MDS writers)."""
    samples = (_common.make_sample(i, kind) for i in range(num))
    out.mkdir(parents=True, exist_ok=True)
    if lib in ("astreaming", "mosaic"):
        if lib == "astreaming":
            from astreaming import MDSWriter
        else:
            from streaming import MDSWriter  # type: ignore[no-redef]
        # MDS cuts shards by bytes: per_shard samples of the mean size (a 4 B offset, 8 B id, and the text
        # and blob each after a 4 B length), plus the shard's 4 B count and final offset.
        total = sum(
            4 + 8 + 4 + len(f"sample-{i}") + 4 + len(_common.make_sample(i, kind)["blob"]) for i in range(num)
        )
        limit = 8 + round(total * per_shard / max(1, num))
        with MDSWriter(out=str(out), columns=_common.COLUMNS, size_limit=limit) as w:
            for s in samples:
                w.write(s)
    elif lib == "litdata":
        from litdata.streaming.writer import BinaryWriter

        writer = BinaryWriter(str(out), chunk_size=per_shard)
        for i, s in enumerate(samples):
            writer.add_item(i, s)
        writer.done()
        writer.merge()
    elif lib == "webdataset":
        import webdataset as wds

        with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, maxsize=1e12, verbose=0) as w:
            for s in samples:
                w.write({"__key__": f"{s['id']:09d}", "cls": s["id"], "txt": s["text"], "bin": s["blob"]})
    else:
        raise ValueError(lib)
    return {"files": len(list(out.iterdir()))}


# ----------------------------------------------------------------------------------------------- open


def _litdata_http_ok() -> None:
    """litdata's obstore S3 client refuses plain-http endpoints unless told ``allow_http``; litdata has no
    option for it, so the client options it passes are extended here (the benchmark's link is plain http)."""
    from litdata.streaming import downloader

    options = dict(downloader._OBSTORE_CLIENT_OPTIONS)
    options["allow_http"] = True
    downloader._OBSTORE_CLIENT_OPTIONS = options


def open_dataset(lib: str, source: str, batch_size: int, cache: str | None = None) -> Any:
    """``lib``'s dataset over ``source`` (a local directory, a remote URL, or for webdataset a JSON list)."""
    if lib == "astreaming":
        from astreaming import StreamingDataset

        if cache is None:
            return StreamingDataset(local=source, batch_size=batch_size)
        return StreamingDataset(remote=source, local=cache, batch_size=batch_size)
    if lib == "mosaic":
        from streaming import StreamingDataset as MosaicDataset

        if cache is None:
            return MosaicDataset(local=source, batch_size=batch_size)
        return MosaicDataset(remote=source, local=cache, batch_size=batch_size)
    if lib == "litdata":
        import litdata

        if cache is None:
            return litdata.StreamingDataset(source, transform=_litdata_bytes)
        _litdata_http_ok()
        options = {
            "endpoint_url": os.environ["S3_ENDPOINT_URL"],
            "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        return litdata.StreamingDataset(
            source, cache_dir=cache, storage_options=options, transform=_litdata_bytes
        )
    if lib == "webdataset":
        import webdataset as wds

        if cache is None:
            urls = [str(p) for p in sorted(Path(source).glob("shard-*.tar"))]
        else:
            urls = [f"pipe:curl -s -f -S '{u}'" for u in json.loads(Path(source).read_text())]
        return wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode()
    raise ValueError(lib)


def _litdata_bytes(sample: dict[str, Any]) -> dict[str, Any]:
    # litdata yields bytes columns as memoryview, which torch's default collate splits into one tensor per
    # byte (silently wrong batches): hand out bytes, as the other libraries do.
    blob = sample["blob"]
    if isinstance(blob, memoryview):
        sample["blob"] = blob.tobytes()
    return sample


def columns(lib: str, sample: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(id, text, blob)`` of a sample or a collated batch."""
    if lib == "webdataset":
        return sample["cls"], sample["txt"], sample["bin"]
    return sample["id"], sample["text"], sample["blob"]


def loader(lib: str, ds: Any, batch_size: int, workers: int) -> Iterable[Any]:
    """Each library's DataLoader over ``ds`` (batches of ``batch_size``)."""
    if lib == "astreaming":
        from astreaming import StreamingDataLoader

        return StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)
    if lib == "litdata":
        import litdata

        return litdata.StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)
    from torch.utils.data import DataLoader

    if lib == "webdataset":
        return DataLoader(ds.batched(batch_size), batch_size=None, num_workers=workers)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers)


# ------------------------------------------------------------------------------------------------ read


def walk(lib: str, it: Iterable[Any], batched: bool, check: Check, limit: int) -> float:
    """Check every sample of ``it``; return the seconds to the first one."""
    began = time.perf_counter()
    first = 0.0
    if batched:
        for batch in it:
            if not check.count:
                first = time.perf_counter() - began
            check.add_batch(*columns(lib, batch))
            if limit and check.count >= limit:
                break
        return first
    for sample in it:
        if not check.count:
            first = time.perf_counter() - began
        ident, text, blob = columns(lib, sample)
        check.add(int(ident), text, blob)
        if check.count == limit:
            break
    return first


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def read(args: argparse.Namespace) -> dict[str, Any]:
    """One epoch (or up to ``--limit`` samples) in a plain loop or a DataLoader, timed from construction."""
    lib = args.lib
    cache: str | None = None
    private: Path | None = None
    source = args.data
    if args.op == "remote":
        cache = tempfile.mkdtemp(prefix=f"bench-{lib}-cache-")
    elif lib == "mosaic":
        import _peer  # puts the torchvision stand-in first; mosaic may normalise its copy

        private = _peer.private_copy(args.data)
        source = str(private)
    check = Check()
    result: dict[str, Any] = {"lib": lib, "op": args.op, "mode": args.mode}
    try:
        cpu = cpu_seconds()
        began = time.perf_counter()
        ds = open_dataset(lib, source, args.batch_size, cache)
        result["init_s"] = time.perf_counter() - began
        if args.mode == "loader":
            it: Iterable[Any] = loader(lib, ds, args.batch_size, args.workers)
            first = walk(lib, it, True, check, args.limit)
        else:
            first = walk(lib, iter(ds), False, check, args.limit)
        seconds = time.perf_counter() - began
        result.update(check.result())
        result["first_sample_s"] = result["init_s"] + first
        result["seconds"] = seconds
        result["samples_per_s"] = check.count / seconds
        result["cpu_s"] = cpu_seconds() - cpu
        result["cpu_us_per_sample"] = result["cpu_s"] / max(1, check.count) * 1e6
        del ds
    finally:
        if lib == "mosaic":
            import _peer

            _peer.cleanup(*([private] if private is not None else []))
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    return result


def _imports(lib: str, remote: bool, loader: bool) -> None:
    """Import the library (and its storage client) before the clock starts: a cost of the process,
    reported apart as ``import_s``."""
    if lib == "astreaming":
        from astreaming import StreamingDataset  # noqa: F401

        if loader:
            from astreaming import StreamingDataLoader  # noqa: F401
        if remote:
            import astreaming.storage.s3  # noqa: F401
    elif lib == "mosaic":
        import _peer  # noqa: F401
        import streaming  # noqa: F401

        if remote:
            import boto3  # noqa: F401
    elif lib == "litdata":
        import litdata  # noqa: F401
    elif lib == "webdataset":
        import webdataset  # noqa: F401


def version(lib: str) -> str:
    from importlib.metadata import version as dist_version

    name = {"mosaic": "mosaicml-streaming"}.get(lib, lib)
    return dist_version(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lib", required=True, choices=["astreaming", "mosaic", "litdata", "webdataset"])
    parser.add_argument("--op", required=True, choices=["write", "iter", "first", "remote"])
    parser.add_argument("--data", required=True, help="dataset directory, remote URL, or a file of URLs")
    parser.add_argument("--kind", default="small", choices=sorted(_common.PAYLOADS))
    parser.add_argument("--num", type=int, default=0)
    parser.add_argument("--per-shard", type=int, default=10_000)
    parser.add_argument("--mode", default="plain", choices=["plain", "loader"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="stop after this many samples (0: the epoch)")
    args = parser.parse_args(argv)
    if args.op == "write":
        began = time.perf_counter()
        result = write(args.lib, Path(args.data), args.num, args.kind, args.per_shard)
        result["seconds"] = time.perf_counter() - began
    else:
        if args.op == "first":
            args.limit = 1
        began = time.perf_counter()
        _imports(args.lib, args.op == "remote", args.mode == "loader")
        imported = time.perf_counter() - began
        # The imports' garbage is the imports' cost: collect it now, not inside the first timed call.
        gc.collect()
        result = read(args)
        result["import_s"] = imported
    result["version"] = version(args.lib)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
