"""MDS, mosaicml-streaming's binary shard format: column encodings, shard reader and writer.

The encoding registry lives in :mod:`astreaming.format.mds.encodings` (re-exported here); the concrete
encodings are split by kind into ``encodings_scalar``, ``encodings_ndarray`` and ``encodings_image``.
"""

from astreaming.format.mds.encodings import (
    Encoding,
    encode_value,
    encoding_names,
    get_encoding,
    is_encoding,
)

__all__ = ["Encoding", "encode_value", "encoding_names", "get_encoding", "is_encoding"]
