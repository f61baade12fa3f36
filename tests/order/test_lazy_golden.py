"""Every worker's lazy plan reproduces its slice of mosaic's ``generate_work`` in the golden cases.

The golden order test checks the eager reference (``generate_work``) against mosaic 0.13.0; this checks
what the engine runs (:class:`~astreaming.order.lazy.LazyWorkerPlan`, whose non-random batching methods
compute only the batches asked for) against the same recorded arrays, padding rows included, in every
batching method and the multi-node ``device_per_stream`` padding family.
"""

from __future__ import annotations

import builtins
import json
import warnings
from typing import Any

import numpy as np
import pytest

from astreaming.order import World
from astreaming.order import sampling as sampling_module
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.store import MemoryStore

from .test_golden_order import _NUMPY_NOISE, GOLDEN, golden_spec

CASES = [
    pytest.param(case, id=f"{group}-{i}")
    for group in ("generate_work", "device_per_stream")
    for i, case in enumerate(json.loads((GOLDEN / f"{group}.json").read_text())["cases"])
]


def _worker_slices(args: dict[str, Any]) -> np.ndarray:
    """The (P, R, W, batches, B) array assembled from every worker's lazy plan (one shared store)."""
    spec = golden_spec(args)
    nodes, ranks, workers = (args["world"][k] for k in ("num_nodes", "ranks_per_node", "workers_per_rank"))
    store = MemoryStore()
    out = []
    for index in range(nodes * ranks * workers):
        rank, worker = divmod(index, workers)
        plan = LazyWorkerPlan(
            spec,
            World.from_rank(nodes, ranks, workers, rank, worker),
            args["epoch"],
            args["sample_in_epoch"],
            store=store,
            chunk=5,
        )
        out.append(plan.batches(0, plan.num_batches))
    lengths = {len(o) for o in out}
    assert len(lengths) == 1, lengths  # every worker has the same number of (padded) batches
    return np.stack(out).reshape(nodes, ranks, workers, -1, spec.batch_size)


@pytest.mark.parametrize("case", CASES)
def test_lazy_worker_plans_equal_mosaic_generate_work(case: dict[str, Any]) -> None:
    expected = case["expected"]
    recorded = [w for w in expected.get("warnings", []) if not w.startswith(_NUMPY_NOISE)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if "raises" in expected:
            with pytest.raises(getattr(builtins, expected["raises"]["type"])):
                _worker_slices(case["args"])
        else:
            got = _worker_slices(case["args"])
            assert list(got.shape) == expected["shape"]
            assert got.reshape(-1).tolist() == expected["flat"]
    if "raises" not in expected:
        # Each worker plans alone, so a warning may repeat per worker: the kinds must be mosaic's.
        assert {w.category.__name__ for w in caught} == {w.split(":", 1)[0] for w in recorded}


SAMPLING = [
    c
    for c in json.loads((GOLDEN / "sampling.json").read_text())["cases"]
    if "raises" not in c["expected"] and c["expected"]["choose_per_shard"] != []
]


def test_sampling_filled_in_small_chunks_equals_mosaic(monkeypatch: pytest.MonkeyPatch) -> None:
    # get_sampling fills the fractional part a chunk of picks at a time (int32 order, no per-pick int64
    # arrays): chunks of 1 and 3 picks cross every chunk boundary the 1M-pick default would.
    for chunk in (1, 3):
        monkeypatch.setattr(sampling_module, "_CHUNK", chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for case in SAMPLING:
                got = sampling_module.get_sampling(**case["args"]).tolist()
                assert got == case["expected"]["choose_per_shard"], case["args"]
