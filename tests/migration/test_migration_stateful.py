"""torchdata's ``StatefulDataLoader`` saves and restores a StreamingDataset mid-epoch, like
``StreamingDataLoader`` does: stop at batch k, reload into a fresh dataset and loader, the tail is identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from astreaming import StreamingDataLoader, StreamingDataset

from .conftest import MakeDataset

# torchdata 0.11 (its latest release) still calls torch APIs that torch 2.13 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")


def batches(loader: object, limit: int | None = None) -> list[list[int]]:
    out: list[list[int]] = []
    for batch in loader:  # type: ignore[attr-defined]
        out.append(batch["id"].tolist())
        if limit is not None and len(out) == limit:
            break
    return out


@pytest.mark.parametrize(
    ("loader_cls", "stop_at"), [(StatefulDataLoader, 3), (StatefulDataLoader, 7), (StreamingDataLoader, 5)]
)
def test_stop_reload_and_the_tail_is_identical(
    loader_cls: type, stop_at: int, make_dataset: MakeDataset, tmp_path: Path
) -> None:
    remote = make_dataset(80, size_limit=500)
    kwargs = dict(remote=str(remote), batch_size=4, shuffle=True, shuffle_seed=11)

    def loader(name: str) -> object:
        ds = StreamingDataset(local=str(tmp_path / name), **kwargs)  # type: ignore[arg-type]
        return loader_cls(ds, batch_size=4, num_workers=2)

    full = batches(loader("full"))
    assert sorted(i for b in full for i in b) == list(range(80))
    first = loader("first")
    head = batches(first, stop_at)
    state = first.state_dict()  # type: ignore[attr-defined]
    resumed = loader("resumed")
    resumed.load_state_dict(state)  # type: ignore[attr-defined]
    tail = batches(resumed)
    assert head == full[:stop_at]
    assert tail == full[stop_at:]
