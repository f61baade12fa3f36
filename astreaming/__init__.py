"""astreaming: asyncio-native streaming of training data from object storage.

Public names are resolved lazily so that ``import astreaming`` imports neither torch nor a cloud SDK.
"""

from __future__ import annotations

from astreaming._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AstreamingError": "astreaming.errors",
    "CacheError": "astreaming.errors",
    "ConfigError": "astreaming.errors",
    "FormatError": "astreaming.errors",
    "HashMismatch": "astreaming.errors",
    "ObjectChanged": "astreaming.errors",
    "ObjectNotFound": "astreaming.errors",
    "PermissionDenied": "astreaming.errors",
    "StorageError": "astreaming.errors",
    "TransientStorageError": "astreaming.errors",
    "UnknownOptionError": "astreaming.errors",
    "MDSWriter": "astreaming.output.writers",
    "JSONWriter": "astreaming.output.writers",
    "CSVWriter": "astreaming.output.writers",
    "TSVWriter": "astreaming.output.writers",
    "XSVWriter": "astreaming.output.writers",
    "merge_index": "astreaming.output.merge",
    "LocalDataset": "astreaming.format.local",
    "Stream": "astreaming.stream",
    "StreamingDataset": "astreaming.dataset",
    "StreamingDataLoader": "astreaming.dataloader",
    "register_stream": "astreaming.engine.args",
    "streams_registry": "astreaming.engine.args",
    "EmptyDatasetError": "astreaming.errors",
    "IndexJSONError": "astreaming.errors",
    "IndexNotFound": "astreaming.errors",
    "WrongValueType": "astreaming.errors",
    "MDSEncoding": "astreaming.format.mds.custom",
    "register_encoding": "astreaming.format.mds.encodings",
    "encodings_registry": "astreaming.format.mds.encodings",
    "Array": "astreaming.array",
    "Spanner": "astreaming.spanner",
    "upload": "astreaming.output.transfer",
    "download_file": "astreaming.output.transfer",
    "list_objects": "astreaming.output.transfer",
    "bytes_to_int": "astreaming._units",
    "number_abbrev_to_int": "astreaming._units",
    "Brotli": "astreaming.format.codecs",
    "Bzip2": "astreaming.format.codecs",
    "Gzip": "astreaming.format.codecs",
    "Snappy": "astreaming.format.codecs",
    "Zstandard": "astreaming.format.codecs",
    "compression_registry": "astreaming.format.codecs",
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
