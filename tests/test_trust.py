"""The trust gate's path rules (harness.trust): real paths as the kernel resolves them, and
"inside" by whole components. Both sides of the worker-manager contract decide with these."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import trust
from harness.trust import is_inside, real_path, trusted_root

NAMES = st.sampled_from(["a", "b", "c", "..", ".", "a b", "ü"])
# A small tree: directories, plus symlinks to relative or absolute targets (some dangling,
# some looping, some through other links), then paths to resolve that may go anywhere.
LINKS = st.lists(
    st.tuples(st.lists(NAMES, min_size=1, max_size=3), st.lists(NAMES, min_size=0, max_size=3), st.booleans()),
    max_size=5,
)
DIRS = st.lists(st.lists(NAMES.filter(lambda n: n not in (".", "..")), min_size=1, max_size=3), max_size=5)
PATHS = st.lists(st.lists(NAMES, min_size=0, max_size=5), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(dirs=DIRS, links=LINKS, paths=PATHS, relative=st.booleans())
def test_real_path_is_what_os_path_realpath_says_for_any_tree_of_links(
    dirs: list[list[str]], links: list[tuple[list[str], list[str], bool]], paths: list[list[str]], relative: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.realpath(tmp)
        for parts in dirs:
            os.makedirs(os.path.join(root, *parts), exist_ok=True)
        for at, target, absolute in links:
            place = os.path.join(root, *at)
            where = os.path.join(root, *target) if absolute else os.path.join(*target) if target else "."
            try:
                os.symlink(where, place)
            except OSError:  # the place exists, or its folder does not: that link is not made
                pass
        cwd = os.getcwd()
        os.chdir(root)
        try:
            for parts in paths:
                path = os.path.join(*parts) if relative and parts else os.path.join(root, *parts)
                assert real_path(path) == os.path.realpath(path), path
        finally:
            os.chdir(cwd)


def test_real_path_without_the_kernels_names_falls_back_to_os_path_realpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    expected = os.path.realpath(tmp_path / "link")
    monkeypatch.setattr(trust, "_FD_NAMES", str(tmp_path / "no-proc") + "/")  # /proc not mounted
    assert real_path(str(tmp_path / "link")) == expected
    monkeypatch.setattr(trust, "_O_PATH", 0)  # a system without O_PATH
    assert real_path(str(tmp_path / "link")) == expected


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        ("/a/b", "/a/b", True),
        ("/a/b/c", "/a/b", True),
        ("/a/bc", "/a/b", False),  # a prefix of the string is not a component
        ("/a", "/a/b", False),
        ("/anything", "/", True),
        ("/", "/", True),
    ],
)
def test_inside_is_by_whole_components(path: str, root: str, inside: bool) -> None:
    assert is_inside(path, root) is inside
    assert (os.path.commonpath([root, path]) == root) is inside  # what it stands for


def test_a_trusted_root_is_matched_by_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "ws" / "sub").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "ws")
    scope = real_path(str(tmp_path / "alias" / "sub"))
    assert trusted_root(scope, [str(tmp_path / "other"), str(tmp_path / "alias")]) == str(tmp_path / "alias")
    assert trusted_root(scope, [str(tmp_path / "w"), ""]) is None
