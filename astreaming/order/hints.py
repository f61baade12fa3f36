"""A checkpoint that carries its epoch's shuffle draws, so a resume on new machines skips their replay.

Every shuffle algorithm but ``naive`` starts an epoch by replaying its draws once (the number of draws a
span's shuffle takes depends on the values drawn, so nothing can be skipped: about 15 ns a sample, 1.5 s
at 100M samples, half a minute at 1B), and keeps the result as one small artefact per shuffle (O(spans)
or O(blocks): about 100 bytes a shard). A resumed epoch on the same node maps it from the plan store; on
new machines (a preempted job rescheduled) it was replayed again, while every GPU of the job waited.

So a checkpoint taken mid-epoch (``StreamingDataset.state_dict(num_samples, ...)``, which
``StreamingDataLoader.state_dict()`` calls) carries the draws artefacts of its epoch that the node has,
under the key ``astreaming_plan``: one string (JSON-safe, as mosaic's ``load_state_dict`` serialises the
whole dict to JSON, and a mosaic loader ignores the key). ``load_state_dict`` offers them to the node's
plan store, where they count as computed. An artefact's key hashes every input of the epoch's order
(shard sizes, weights, seeds, block size, algorithm, epoch), so a hint from another dataset, epoch or
configuration is simply never looked up; a damaged one (the zip's CRCs, its keys and names checked) is
refused whole, and the resume replays the draws as before.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
import zipfile
from collections.abc import Callable

import numpy as np

from astreaming.errors import ConfigError, FormatError
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.quiet import quiet
from astreaming.order.spec import EpochSpec
from astreaming.order.store import Arrays, PlanStore
from astreaming.order.world import World

__all__ = [
    "KEY",
    "MAX_BYTES",
    "PlanHintError",
    "collect_hints",
    "decode_hints",
    "encode_hints",
    "offer_hints",
]

#: The state dict's key.
KEY = "astreaming_plan"
#: The string's prefix: its format (a change of the encoding changes it).
_PREFIX = "astreaming-plan-1:"
#: Raw bytes of artefacts a checkpoint carries at most (about 10 MB at 1B samples in 10k-sample shards).
MAX_BYTES = 32 << 20
#: The keys of the shuffles' draws artefacts (``PermSource.key``): nothing else is carried, and a key
#: from a checkpoint becomes a directory name of the plan store, so it must be one of these.
_DRAWS_KEY = re.compile(r"perm-[a-z0-9]+(?:-s\d+)?-[0-9a-f]{32}")
_NAME = re.compile(r"[a-z_]+")


class PlanHintError(FormatError):
    """A checkpoint's ``astreaming_plan`` cannot be read (damaged, or from an unknown version)."""


class _Missing(Exception):
    """An artefact the plan needs that the store does not hold."""


class _Peeking:
    """A store that lends what another holds and records the draws among it, never computing."""

    def __init__(self, store: PlanStore) -> None:
        self.store = store
        self.found: dict[str, Arrays] = {}

    def get(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        arrays = self.store.peek(key)
        if arrays is None:
            raise _Missing(key)
        if _DRAWS_KEY.fullmatch(key):
            self.found[key] = arrays
        return arrays

    def discard(self, key: str) -> None:
        """Nothing: a checkpoint never discards what the node's plan store holds."""

    def peek(self, key: str) -> Arrays | None:
        return self.store.peek(key)


def collect_hints(
    spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int, store: PlanStore
) -> dict[str, Arrays]:
    """The draws artefacts of the epoch's plan that ``store`` holds (none is computed).

    Builds the plan as a resumed worker would (its shuffles' draws are fetched at construction) over a
    store that only lends: the first artefact missing ends the collection with what was found.
    """
    lender = _Peeking(store)
    # A missing artefact ends the collection; a configuration error is the iteration's to raise; the
    # plan's configuration warnings belong to the iteration too, not to a checkpoint.
    with contextlib.suppress(_Missing, ConfigError), quiet():
        LazyWorkerPlan(spec, world, epoch, sample_in_epoch, store=lender)
    return lender.found


def encode_hints(hints: dict[str, Arrays]) -> str | None:
    """``hints`` as one JSON-safe string (a zip of ``.npy`` files, base64), or None if there are none
    or they exceed :data:`MAX_BYTES`."""
    if not hints or sum(int(a.nbytes) for arrays in hints.values() for a in arrays.values()) > MAX_BYTES:
        return None
    buffer = io.BytesIO()
    # Level 1: the generator states are random bytes; the offsets and bounds compress at any level.
    with zipfile.ZipFile(buffer, "w") as archive:
        for key in sorted(hints):
            for name, array in sorted(hints[key].items()):
                # A fixed date: every rank (and every run) encodes the same draws to the same string.
                info = zipfile.ZipInfo(f"{key}/{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                data = io.BytesIO()
                np.save(data, np.ascontiguousarray(array), allow_pickle=False)
                archive.writestr(info, data.getvalue(), zipfile.ZIP_DEFLATED, 1)
    return _PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_hints(text: object) -> dict[str, Arrays]:
    """The artefacts of an :func:`encode_hints` string.

    Raises:
        PlanHintError: ``text`` is not such a string, is damaged (base64, zip CRCs, ``.npy`` headers),
            or names something other than draws artefacts.
    """
    if not isinstance(text, str) or not text.startswith(_PREFIX):
        shown = repr(text[:40]) if isinstance(text, str) else type(text).__name__
        raise PlanHintError(f"checkpoint key {KEY!r}: not a plan of this astreaming version ({shown})")
    try:
        raw = base64.b64decode(text[len(_PREFIX) :], validate=True)
        hints: dict[str, Arrays] = {}
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for info in archive.infolist():
                key, _, file = info.filename.partition("/")
                name = file.removesuffix(".npy")
                if not _DRAWS_KEY.fullmatch(key) or not _NAME.fullmatch(name) or not file.endswith(".npy"):
                    raise PlanHintError(f"checkpoint key {KEY!r}: unexpected member {info.filename!r}")
                with archive.open(info) as member:  # read whole: its CRC is checked at the end
                    hints.setdefault(key, {})[name] = np.load(io.BytesIO(member.read()), allow_pickle=False)
    except PlanHintError:
        raise
    except (binascii.Error, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise PlanHintError(f"checkpoint key {KEY!r} is damaged: {exc}") from exc
    return hints


def offer_hints(store: PlanStore, hints: dict[str, Arrays]) -> None:
    """Put ``hints`` in ``store`` as computed (an artefact the store already holds stays as it is)."""
    for key, arrays in hints.items():
        store.get(key, _given(arrays))


def _given(arrays: Arrays) -> Callable[[], Arrays]:
    return lambda: arrays
