"""Cache layout and the guard against basenames that escape the cache root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from astreaming.cache.paths import CacheDir, safe_join
from astreaming.errors import CacheError


def test_layout_is_local_split_basename(tmp_path: Path) -> None:
    cache = CacheDir(tmp_path, "train")
    assert cache.root == tmp_path.resolve() / "train"
    assert cache.path("shard.00000.mds") == tmp_path.resolve() / "train" / "shard.00000.mds"
    assert cache.path("3/shard.00000.mds.zstd") == tmp_path.resolve() / "train" / "3" / "shard.00000.mds.zstd"
    assert cache.index_path() == tmp_path.resolve() / "train" / "index.json"
    assert CacheDir(tmp_path).path("./a/./b") == tmp_path.resolve() / "a" / "b"


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/../../evil", "/etc/passwd", "a/../..", "", ".", "a\\..\\b", "nul\x00byte"],
)
def test_escaping_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CacheError):
        CacheDir(tmp_path).path(name)


def test_dotdot_is_refused_even_when_it_stays_inside(tmp_path: Path) -> None:
    # "a/../b" is harmless lexically, but an index has no business writing it: refuse, do not normalise.
    with pytest.raises(CacheError, match=r"'\.\.'"):
        safe_join(tmp_path, "a/../b", what="shard 4")


def test_symlinked_component_inside_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "cache"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(CacheError, match="symlink"):
        safe_join(root, "link/shard.00000.mds", what="shard 0")
    os.symlink(outside / "target", root / "file-link")
    with pytest.raises(CacheError, match="shard 7"):
        safe_join(root, "file-link", what="shard 7")


def test_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    assert safe_join(tmp_path / "alias", "x/shard.mds") == real / "x" / "shard.mds"


def test_split_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="split"):
        CacheDir(tmp_path, "../other")


def test_cache_dir_over_a_symlinked_local_still_refuses_symlinks_inside(tmp_path: Path) -> None:
    # CacheDir resolves ``local`` once and joins names onto that without resolving it again: a symlink
    # inside the root is still refused, and names land under the real directory.
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    os.symlink(tmp_path, real / "up")
    os.symlink(real, tmp_path / "alias")
    cache = CacheDir(tmp_path / "alias", "sub")
    assert cache.path("x/shard.mds") == real / "sub" / "x" / "shard.mds"
    os.symlink(tmp_path, real / "sub" / "escape")
    with pytest.raises(CacheError, match="symlink"):
        cache.path("escape/shard.mds")
    with pytest.raises(CacheError, match="symlink"):
        CacheDir(tmp_path / "alias", "up")
