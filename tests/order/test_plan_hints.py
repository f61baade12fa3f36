"""The shuffle draws a checkpoint carries: collected without computing, encoded, decoded, refused when
damaged, and a plan built on them equals the plan that replays them (every algorithm and batching)."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astreaming.cache.plans import FilePlanStore
from astreaming.order import EpochSpec, World, hints, perm
from astreaming.order.batching._common import resample
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.store import MemoryStore

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SIZES = [[13, 7, 20, 11, 9, 16, 5, 12], [8, 14, 6, 10]]
WORLD = World(2, 1, 2, 1)  # node 0 of 2, worker 1 of 2: any worker's plan fetches the same draws


def _spec(algo: str, method: str = "random") -> EpochSpec:
    return EpochSpec.build(
        SIZES,
        batch_size=3,
        num_nodes=2,
        shuffle=True,
        shuffle_algo=algo,
        shuffle_seed=17,
        shuffle_block_size=25,
        batching_method=method,
    )


CASES = [(algo, "random") for algo in ("py1e", "py1s", "py2s", "py1br")] + [
    ("py1e", method) for method in ("per_stream", "stratified", "device_per_stream")
]


def _chunks(plan: LazyWorkerPlan) -> list[list[int]]:
    return [c.tolist() for c in plan.chunks()]


@pytest.mark.parametrize(("algo", "method"), CASES)
def test_a_plan_on_carried_draws_equals_the_replayed_one(
    algo: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(algo, method)
    computed = MemoryStore()
    expected = _chunks(LazyWorkerPlan(spec, WORLD, 3, 10, store=computed))
    found = hints.collect_hints(spec, WORLD, 3, 10, computed)
    assert found and all(key.startswith(f"perm-{algo}") for key in found)
    text = hints.encode_hints(found)
    assert text is not None
    carried = hints.decode_hints(text)
    assert carried.keys() == found.keys()
    for key, arrays in found.items():
        assert carried[key].keys() == arrays.keys()
        for name, array in arrays.items():
            assert carried[key][name].dtype == array.dtype
            np.testing.assert_array_equal(carried[key][name], array)

    def replayed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("draws replayed")

    for name in ("py1e_draws", "py1s_draws", "py2s_draws", "py1br_draws"):
        monkeypatch.setattr(perm, name, replayed)
    fresh = MemoryStore()
    hints.offer_hints(fresh, carried)
    assert _chunks(LazyWorkerPlan(spec, WORLD, 3, 10, store=fresh)) == expected


def test_collecting_computes_nothing() -> None:
    spec = _spec("py1e")
    empty = MemoryStore()
    assert hints.collect_hints(spec, WORLD, 0, 0, empty) == {}
    assert empty.peek(perm.PermSource(spec, resample(spec, 0), 0, MemoryStore()).key) is None


def test_a_file_store_takes_carried_draws_once(tmp_path: Path) -> None:
    spec = _spec("py1s")
    source = MemoryStore()
    LazyWorkerPlan(spec, WORLD, 0, 0, store=source)
    found = hints.collect_hints(spec, WORLD, 0, 0, source)
    (key,) = found
    store = FilePlanStore(tmp_path / "plans")
    assert store.peek(key) is None
    hints.offer_hints(store, found)
    published = store.peek(key)
    assert published is not None and (tmp_path / "plans" / key).is_dir()
    np.testing.assert_array_equal(published["state"], found[key]["state"])
    # An artefact already there stays as it is (another rank of the node offered it first).
    other = {key: {name: np.zeros_like(a) for name, a in found[key].items()}}
    hints.offer_hints(store, other)
    again = store.peek(key)
    assert again is not None
    np.testing.assert_array_equal(again["state"], found[key]["state"])


def test_nothing_or_too_much_is_not_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hints.encode_hints({}) is None
    spec = _spec("py1e")
    store = MemoryStore()
    LazyWorkerPlan(spec, WORLD, 0, 0, store=store)
    found = hints.collect_hints(spec, WORLD, 0, 0, store)
    size = sum(a.nbytes for arrays in found.values() for a in arrays.values())
    monkeypatch.setattr(hints, "MAX_BYTES", size - 1)
    assert hints.encode_hints(found) is None
    monkeypatch.setattr(hints, "MAX_BYTES", size)
    assert hints.encode_hints(found) is not None


def _zip(members: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return "astreaming-plan-1:" + base64.b64encode(buffer.getvalue()).decode()


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


KEY = "perm-py1e-" + "0" * 32


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (12, "not a plan"),
        ("astreaming-plan-9:AAAA", "not a plan"),
        ("astreaming-plan-1:not base64!", "damaged"),
        ("astreaming-plan-1:" + base64.b64encode(b"PK\x03\x04 cut").decode(), "damaged"),
        (_zip({f"../../{KEY}/state.npy": _npy(np.zeros(3))}), "unexpected member"),
        (_zip({"index.json/state.npy": _npy(np.zeros(3))}), "unexpected member"),
        (_zip({f"{KEY}/state.txt": b"x"}), "unexpected member"),
        (_zip({f"{KEY}/state.npy": _npy(np.array([object()]))}), "damaged"),  # a pickle: refused
        (_zip({f"{KEY}/state.npy": b"\x93NUMPY garbage"}), "damaged"),
    ],
    ids=["not-str", "version", "base64", "zip", "traversal", "other-key", "not-npy", "pickle", "npy"],
)
def test_a_damaged_or_foreign_string_is_refused(text: object, match: str) -> None:
    with pytest.raises(hints.PlanHintError, match=match):
        hints.decode_hints(text)


def test_a_flipped_byte_fails_the_zip_crc() -> None:
    spec = _spec("py1e")
    store = MemoryStore()
    LazyWorkerPlan(spec, WORLD, 0, 0, store=store)
    text = hints.encode_hints(hints.collect_hints(spec, WORLD, 0, 0, store))
    assert text is not None
    raw = bytearray(base64.b64decode(text.split(":", 1)[1]))
    raw[len(raw) // 3] ^= 0x40  # inside a member's compressed data
    with pytest.raises(hints.PlanHintError, match="damaged"):
        hints.decode_hints("astreaming-plan-1:" + base64.b64encode(bytes(raw)).decode())


def test_the_same_draws_encode_to_the_same_string(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ranks checkpoint at different times: their strings must not differ by a zip member's date.
    spec = _spec("py2s")
    store = MemoryStore()
    LazyWorkerPlan(spec, WORLD, 0, 0, store=store)
    found = hints.collect_hints(spec, WORLD, 0, 0, store)
    first = hints.encode_hints(found)
    later = [2_000_000_000.0]

    def clock() -> float:
        later[0] += 3600.0
        return later[0]

    monkeypatch.setattr(zipfile.time, "time", clock)  # type: ignore[attr-defined]
    assert hints.encode_hints(found) == first
