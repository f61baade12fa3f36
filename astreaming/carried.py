"""astreaming's typed errors carried whole from a DataLoader worker to the main process.

torch re-raises a worker's exception in the main process as ``type(error)(message)``: the type and the
message survive, every attribute is lost (``ObjectChanged.url``, ``StorageError.url``,
``TransientStorageError.retry_after`` arrive as None). Where a worker's items reach the main process
through :class:`~astreaming.StreamingDataLoader` alone (its own batches, or its samples with
``batch_size=None``), a worker instead ends its iteration with a :class:`CarriedError` item holding the
error itself, pickled with its attributes, and the loader raises that error where torch would have raised
its copy: after the same items, in the same order. The worker's traceback goes along as a note.

Errors of other types (a user's collate function, torch's own) and errors that do not survive pickling
take torch's path, as before.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Iterator
from typing import Any, TypeVar

from astreaming.errors import AstreamingError

__all__ = ["CarriedError", "carry_errors", "raise_carried"]

T = TypeVar("T")

#: Set in a DataLoader worker of a StreamingDataLoader whose items are the dataset's own samples
#: (``batch_size=None``): the dataset's iteration then carries its errors (see StreamingDataset.__iter__).
carry_in_this_worker = False


class CarriedError:
    """An astreaming error on its way from a DataLoader worker to the main process (see the module)."""

    __slots__ = ("error",)

    def __init__(self, error: AstreamingError) -> None:
        self.error = error

    def __reduce__(self) -> tuple[type[CarriedError], tuple[AstreamingError]]:
        return CarriedError, (self.error,)


def carry_errors(items: Iterator[T], worker: int) -> Iterator[T | CarriedError]:
    """``items``, ended by a :class:`CarriedError` instead of an astreaming error that survives pickling.

    Closing the returned generator closes ``items``; an error raised while ``items`` closes propagates.
    """
    try:
        yield from items
    except AstreamingError as error:
        carried = _carriable(error, worker)
        if carried is None:
            raise
        yield carried


def raise_carried(item: Any) -> None:
    """Raise the error ``item`` carries, if it is a :class:`CarriedError` (else nothing)."""
    if type(item) is CarriedError:
        raise item.error


def _carriable(error: AstreamingError, worker: int) -> CarriedError | None:
    try:
        # What the main process will get: the same type, message and attributes, or torch's path.
        copy = pickle.loads(pickle.dumps(error))
    except Exception:
        return None
    if type(copy) is not type(error) or vars(copy) != vars(error) or copy.args != error.args:
        return None
    text = "".join(traceback.format_exception(error)).rstrip()
    error.add_note(f"Raised in DataLoader worker process {worker}:\n{text}")  # a str: pickles as well
    return CarriedError(error)
