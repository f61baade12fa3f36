"""Convert image folders, JSONL, CSV/TSV and Parquet into MDS datasets (``astreaming convert``).

:func:`convert` reads a source (:mod:`astreaming.convert.sources`), infers its columns unless told
(:mod:`astreaming.convert.infer`, :mod:`astreaming.convert.columns`) and writes MDS with the uploading
writer, in one process or in worker processes that each write a partition before ``merge_index``
(:mod:`astreaming.convert.run`). :func:`dataframe_to_mds` does the same for Spark DataFrames.
"""

from astreaming.convert.columns import parse_columns
from astreaming.convert.run import ConvertOptions, ConvertResult, convert
from astreaming.convert.sources import SOURCE_KINDS, open_source
from astreaming.convert.spark import SparkTaskError, dataframe_to_mds

__all__ = [
    "SOURCE_KINDS",
    "ConvertOptions",
    "ConvertResult",
    "SparkTaskError",
    "convert",
    "dataframe_to_mds",
    "open_source",
    "parse_columns",
]
