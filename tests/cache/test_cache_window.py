"""The eviction window reaches past the walk's two chunks: :meth:`PlanFeed.beyond` computes the chunks
ahead without handing them out, and :meth:`PlanFeed.next` then hands out the same chunks, in order."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from astreaming import MDSWriter, StreamingDataset
from astreaming.engine.planfeed import PlanFeed


def test_chunks_computed_ahead_are_handed_out_later_in_order(tmp_path: Path) -> None:
    with MDSWriter(out=str(tmp_path / "data"), columns={"id": "int"}, size_limit=400) as writer:
        for i in range(200):
            writer.write({"id": i})
    ds = StreamingDataset(local=str(tmp_path / "data"), batch_size=4)
    table = ds._table
    ids = np.random.default_rng(3).permutation(200).astype(np.int64)
    # Chunks of 1, 2, 4, 8, ... batches of 4, as a lazy plan yields them.
    bounds = [0, 4, 12, 28, 60, 124, 200]
    plan = [ids[a:b] for a, b in itertools.pairwise(bounds)]

    feed = PlanFeed(table, plan)
    first, ahead = feed.next(), feed.next()
    assert first is not None and ahead is not None and (first.start, ahead.start) == (0, 4)
    wanted = set(feed.wanted)
    beyond = feed.beyond(first.start + 50)
    assert [c.start for c in beyond] == [12, 28]  # the chunk holding position 50 is the last
    assert feed.wanted == wanted  # not handed out: the scheduler is not asked for their shards
    assert [c.start for c in feed.beyond(40)] == [12, 28]  # computed once
    assert [c.start for c in feed.beyond(1000)] == [12, 28, 60, 124]  # up to the plan's end

    again = PlanFeed(table, [ids[a:b] for a, b in itertools.pairwise(bounds)])
    rest = [feed.next() for _ in range(5)]
    straight = [again.next() for _ in range(7)][2:]
    assert rest[-1] is None and straight[-1] is None
    for got, want in zip(rest[:-1], straight[:-1], strict=True):
        assert got is not None and want is not None
        assert got.start == want.start
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.first, want.first)
    assert feed.wanted == again.wanted == set(table.shards_of(ids).tolist())
