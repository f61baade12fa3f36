"""Both gather strategies (sort, and linear passes for large plans) give perm[positions]."""

from __future__ import annotations

import numpy as np
import pytest

from astreaming.order.batching import random as random_batching
from astreaming.order.batching.random import gather_permutation


@pytest.mark.parametrize("num_pieces", [1, 3, 8])
@pytest.mark.parametrize("skip_last", [False, True])
def test_linear_and_sorted_gathers_agree(
    num_pieces: int, skip_last: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(num_pieces)
    n = 5000
    perm = rng.permutation(n).astype(np.int64)
    bounds = [n * k // num_pieces for k in range(num_pieces + 1)]
    limit = bounds[-2] if skip_last and num_pieces > 1 else n
    positions = rng.integers(0, limit, size=(40, 7)).astype(np.int64)
    positions[rng.random(positions.shape) < 0.1] = -1

    def pieces() -> list[tuple[int, np.ndarray | None]]:
        out: list[tuple[int, np.ndarray | None]] = []
        for k in range(num_pieces):
            lo, hi = bounds[k], bounds[k + 1]
            out.append((lo, None if (skip_last and k == num_pieces - 1 and num_pieces > 1) else perm[lo:hi]))
        return out

    expected = np.where(positions >= 0, perm[np.maximum(positions, 0)], -1)
    sorted_path = gather_permutation(pieces(), positions, num_pieces=num_pieces)
    monkeypatch.setattr(random_batching, "_SORT_BELOW", 0)
    linear_path = gather_permutation(pieces(), positions, num_pieces=num_pieces)
    np.testing.assert_array_equal(sorted_path, expected)
    np.testing.assert_array_equal(linear_path, expected)


@pytest.mark.filterwarnings(
    "ignore::UserWarning"
)  # tiny datasets over many canonical nodes warn (mosaic too)
def test_golden_orders_hold_on_the_linear_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every golden generate_work case (random batching) again, forcing the linear gather."""
    import json
    from pathlib import Path

    from astreaming.order.plan import plan_worker_epoch
    from astreaming.order.spec import EpochSpec
    from astreaming.order.world import World

    monkeypatch.setattr(random_batching, "_SORT_BELOW", 0)
    path = Path(__file__).parent.parent / "golden" / "iteration" / "cases.json"
    meta = json.loads(path.read_text())["meta"]["datasets"]
    cases = [c for c in json.loads(path.read_text())["cases"] if c["stream_form"] == "remote/local"]
    checked = 0
    for case in cases:
        kwargs = case["dataset_kwargs"]
        world = case["world"]
        if world["num_workers"] != 0 or kwargs.get("replication"):
            continue
        sizes = meta[case["streams"][0]["dataset"]]["samples_per_shard"]
        spec = EpochSpec.build(
            [sizes],
            batch_size=kwargs["batch_size"],
            num_nodes=world["num_nodes"],
            epoch_size=kwargs.get("epoch_size"),
            num_canonical_nodes=kwargs.get("num_canonical_nodes"),
            shuffle=kwargs.get("shuffle", False),
            shuffle_algo=kwargs.get("shuffle_algo", "py1e"),
            shuffle_seed=kwargs.get("shuffle_seed", 9176),
            shuffle_block_size=kwargs.get("shuffle_block_size"),
            partition_algo=kwargs.get("partition_algo", "relaxed"),
            sampling_method=kwargs.get("sampling_method", "balanced"),
            sampling_granularity=kwargs.get("sampling_granularity", 1),
        )
        per_node = world["world_size"] // world["num_nodes"]
        for rank in range(world["world_size"]):
            w = World.from_rank(world["num_nodes"], per_node, 1, rank, 0)
            ids = plan_worker_epoch(spec, w, 0, 0).sample_ids.tolist()
            expected = [i for batch in case["expected"]["epochs"][0]["ranks"][rank] for i in batch]
            assert ids == expected, case["name"]
            checked += 1
    assert checked >= 5
