"""Bad StreamingDataset / Stream arguments fail at construction with the argument named."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from astreaming import ConfigError, Stream, StreamingDataset, UnknownOptionError
from astreaming.stream import default_local

from .conftest import MakeDataset


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


def test_streams_with_different_remotes_in_one_local_are_refused(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    # Same shapes, other ids: the second stream would read the first's cached shards as its own.
    first, second = make_dataset(60, first_id=0), make_dataset(60, first_id=1000)
    shared = tmp_path / "cache"
    streams = [Stream(remote=str(first), local=str(shared)), Stream(remote=str(second), local=str(shared))]
    with pytest.raises(ConfigError, match="local") as info:
        StreamingDataset(streams=streams, batch_size=4)
    assert str(shared) in str(info.value) and str(second) in str(info.value)
    # The same directory reached another way (a trailing slash, a symlink) is the same directory.
    (tmp_path / "link").symlink_to(shared, target_is_directory=True)
    streams = [
        Stream(remote=str(first), local=f"{shared}/"),
        Stream(remote=str(second), local=str(tmp_path / "link")),
    ]
    with pytest.raises(ConfigError, match="local"):
        StreamingDataset(streams=streams, batch_size=4)


def test_one_local_is_fine_for_the_same_remote_or_other_splits(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    source = make_dataset(30, first_id=0)
    shared = tmp_path / "cache"
    twice = StreamingDataset(
        streams=[
            Stream(remote=str(source), local=str(shared)),
            Stream(remote=str(source), local=str(shared)),
        ],
        batch_size=4,
    )
    assert sorted(int(s["id"]) for s in twice) == sorted(list(range(30)) * 2)
    splits = tmp_path / "splits"
    for split, first in (("train", 0), ("val", 500)):
        shutil.copytree(make_dataset(20, first_id=first), splits / split)
    by_split = StreamingDataset(
        streams=[
            Stream(remote=str(splits), local=str(shared / "s"), split="train"),
            Stream(remote=str(splits), local=str(shared / "s"), split="val"),
        ],
        batch_size=4,
    )
    assert sorted(int(s["id"]) for s in by_split) == list(range(20)) + list(range(500, 520))


def test_stream_proportions_that_sum_to_zero_are_a_config_error(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    streams = [
        Stream(remote=str(make_dataset(10)), local=str(tmp_path / "a"), proportion=0),
        Stream(remote=str(make_dataset(10)), local=str(tmp_path / "b"), proportion=0.0),
    ]
    with pytest.raises(ConfigError, match="proportion"):
        StreamingDataset(streams=streams, batch_size=2)


def test_a_local_directory_caching_one_remote_refuses_another(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    # Same shapes, other ids: the second dataset's shards have the first's names and sizes.
    first, second = make_dataset(60, first_id=0), make_dataset(60, first_id=1000)
    cache = tmp_path / "cache"
    done = StreamingDataset(remote=str(first), local=str(cache), batch_size=4)
    assert sorted(int(s["id"]) for s in done) == list(range(60))
    # While the first is still open (two jobs on one node), and after it is closed (the next job).
    with pytest.raises(ConfigError, match="local") as info:
        StreamingDataset(remote=str(second), local=str(cache), batch_size=4)
    assert str(first) in str(info.value) and str(second) in str(info.value)
    done.close()
    with pytest.raises(ConfigError, match="local"):
        StreamingDataset(remote=str(second), local=str(cache), batch_size=4)
    # The same remote, however it is written, keeps using its cache.
    (tmp_path / "link").symlink_to(first, target_is_directory=True)
    again = StreamingDataset(remote=f"{tmp_path / 'link'}/", local=str(cache), batch_size=4)
    assert sorted(int(s["id"]) for s in again) == list(range(60))
    again.close()
