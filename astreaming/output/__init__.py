"""Writing datasets to remote storage: the uploading writers and merge_index with remote partitions.

This package joins :mod:`astreaming.format` (which writes local files and never imports storage) and
:mod:`astreaming.storage`. ``astreaming`` exports its writers and :func:`merge_index` as the public ones.
"""

from astreaming.output.merge import merge_index
from astreaming.output.uploader import RemoteUploader, UploadStats
from astreaming.output.writers import CSVWriter, JSONWriter, MDSWriter, RemoteOutput, TSVWriter, XSVWriter

__all__ = [
    "CSVWriter",
    "JSONWriter",
    "MDSWriter",
    "RemoteOutput",
    "RemoteUploader",
    "TSVWriter",
    "UploadStats",
    "XSVWriter",
    "merge_index",
]
