"""Bad StreamingDataset / Stream arguments fail at construction with the argument named."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest

from astreaming import ConfigError, Stream, StreamingDataset, UnknownOptionError
from astreaming.stream import default_local


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"download_retry": -1}, ConfigError, "download_retry"),
        ({"download_timeout": 0}, ConfigError, "download_timeout"),
        ({"epoch_size": -5}, ConfigError, "epoch_size"),
        ({"epoch_size": "lots"}, ConfigError, "epoch_size"),
        ({"cache_limit": "big"}, ConfigError, "cache_limit"),
        ({"sampling_method": "greedy"}, UnknownOptionError, "sampling_method"),
        ({"sampling_granularity": 0}, ConfigError, "sampling_granularity"),
        ({"partition_algo": "fast"}, UnknownOptionError, "partition_algo"),
        ({"shuffle_algo": "py1b"}, UnknownOptionError, "shuffle_algo"),
        ({"batching_method": "mixed"}, UnknownOptionError, "batching_method"),
        ({"shuffle_seed": -1}, ConfigError, "shuffle_seed"),
        ({"batch_size": 0}, ConfigError, "batch_size"),
        ({"num_canonical_nodes": 0}, ConfigError, "num_canonical_nodes"),
        ({"max_concurrent_downloads": 0}, ConfigError, "max_concurrent_downloads"),
        ({"validate_hash": "crc32"}, UnknownOptionError, "validate_hash"),
    ],
)
def test_bad_dataset_arguments_are_named(kwargs: dict[str, Any], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        StreamingDataset(remote="/nonexistent/data", **kwargs)


def test_streams_and_remote_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="streams"):
        StreamingDataset(streams=[Stream(remote="/x")], remote="/y")
    with pytest.raises(ConfigError, match="remote"):
        StreamingDataset()
    with pytest.raises(UnknownOptionError, match="stream_name"):
        StreamingDataset(remote="/x", stream_name="nope")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({}, "remote"),
        ({"remote": "/x", "proportion": 0.5, "repeat": 2}, "proportion"),
        ({"remote": "/x", "repeat": -1}, "repeat"),
        ({"remote": "/x", "download_timeout": -1}, "download_timeout"),
        ({"remote": "/x", "download_retry": -2}, "download_retry"),
        ({"remote": "/x", "choose": 2.5}, "choose"),
    ],
)
def test_bad_stream_arguments_are_named(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Stream(**kwargs)


def test_default_local_is_stable_and_reusable() -> None:
    path = default_local("s3://bucket/data")
    assert path == default_local("s3://bucket/data") != default_local("s3://bucket/other")
    assert os.path.dirname(path) == tempfile.gettempdir()
    stream = Stream(remote="s3://bucket/data", split="train")
    assert stream.local_root == os.path.join(path, "train")
    assert stream.remote_root == "s3://bucket/data/train"
    assert stream.has_remote
    assert not Stream(remote="/same", local="/same").has_remote
    assert not Stream(local="/only").has_remote


def test_default_local_ignores_a_rotated_token_in_the_query() -> None:
    signed = default_local("https://host/ds?sv=2024&sig=first")
    assert signed == default_local("https://host/ds?sv=2024&sig=second") == default_local("https://host/ds")
    assert signed != default_local("https://host/other?sv=2024&sig=first")
    # A plain local path keeps every character (a "?" is part of a file name there).
    assert default_local("data?x") != default_local("data")


def test_keep_zip_forced_without_remote() -> None:
    options = Stream(local="/only").download_options(
        download_retry=2, download_timeout=60, validate_hash=None, keep_zip=False
    )
    assert options.keep_zip
    options = Stream(remote="s3://b/d", download_retry=5).download_options(
        download_retry=2, download_timeout=60, validate_hash="sha1", keep_zip=False
    )
    assert (options.download_retry, options.validate_hash, options.keep_zip) == (5, "sha1", False)
