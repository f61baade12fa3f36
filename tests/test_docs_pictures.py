"""``docs/pictures.py`` draws the README's concept picture from the real order code: check its data."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

PICTURES = Path(__file__).resolve().parents[1] / "docs" / "pictures.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_pictures", PICTURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_reads_every_shard_once_per_sample_and_the_shuffles_differ() -> None:
    from astreaming.cli.plancalc import shuffle_spread

    pictures = load()
    spreads = {}
    for title, settings in pictures.SETTINGS:
        sequences = pictures.shard_sequences(settings)
        assert len(sequences) == pictures.NODES * pictures.RANKS_PER_NODE
        counts = np.bincount(np.concatenate(sequences), minlength=pictures.SHARDS)
        assert (counts == pictures.PER_SHARD).all(), title  # each sample of each shard once per epoch
        spreads[title] = np.mean([shuffle_spread(s) for s in sequences])
    (_, plain_settings), (py1s, _), (py1e, _), (py1br, _) = pictures.SETTINGS
    # Without shuffle a rank walks its shards in order; py1s keeps shards whole; the block shuffles mix.
    assert all((np.diff(s) >= 0).all() for s in pictures.shard_sequences(plain_settings))
    assert spreads[py1e] > 4 * spreads[py1s] and spreads[py1br] > 4 * spreads[py1s]
