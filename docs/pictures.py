"""Draw the README's concept picture from astreaming's own order code (``astreaming.order``).

Which shard each rank reads at each step of an epoch, for the shuffle algorithms side by side: 100
shards of 100 samples, 2 nodes x 2 ranks, batch size 8, 4 canonical nodes, shuffle block 1,000 samples.

    pip install matplotlib && python docs/pictures.py        # writes docs/shards-per-rank.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from astreaming.cli.plancalc import plan_ranks, shuffle_spread
from astreaming.order import EpochSpec

SHARDS, PER_SHARD = 100, 100
NODES, RANKS_PER_NODE, BATCH = 2, 2, 8
SETTINGS = [
    ("no shuffle", {"shuffle": False}),
    ("py1s", {"shuffle": True, "shuffle_algo": "py1s"}),
    ("py1e, block 1,000", {"shuffle": True, "shuffle_algo": "py1e", "shuffle_block_size": 1_000}),
    ("py1br, block 1,000", {"shuffle": True, "shuffle_algo": "py1br", "shuffle_block_size": 1_000}),
]


def shard_sequences(settings: dict[str, object]) -> list[np.ndarray]:
    """Each rank's shard at every step of epoch 0 (no DataLoader workers)."""
    spec = EpochSpec.build(
        [np.full(SHARDS, PER_SHARD, np.int64)],
        batch_size=BATCH,
        num_nodes=NODES,
        num_canonical_nodes=4,
        **settings,  # type: ignore[arg-type]
    )
    ranks = range(NODES * RANKS_PER_NODE)
    return [p.shards for p in plan_ranks(spec, NODES, RANKS_PER_NODE, 0, 0, ranks)]


def main(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(4 * len(SETTINGS), 3.6), sharey=True)
    for ax, (title, settings) in zip(axes, SETTINGS, strict=True):
        sequences = shard_sequences(settings)
        for rank, shards in enumerate(sequences):
            ax.scatter(np.arange(len(shards)), shards, s=0.6, label=f"rank {rank}")
        spread = np.mean([shuffle_spread(s) for s in sequences])
        ax.set_title(f"{title}\nshuffle spread {spread:.2f}", fontsize=10)
        ax.set_xlabel("step of the rank's epoch")
    axes[0].set_ylabel("shard")
    axes[-1].legend(markerscale=8, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("shards-per-rank.png"))
