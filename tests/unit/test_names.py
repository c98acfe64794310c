"""Tests for syncagent.names: which entry names and symlinks the listing refuses."""

from __future__ import annotations

import pytest
from support.samples import AUTH_KEY

from syncagent.names import check_name, check_symlink

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x\x00", "x\n", "x\x7f", b"\xff", "", b""])
def test_unsafe_names(name: str | bytes) -> None:
    problem = check_name("conf.d/n", name)
    assert problem is not None and problem.path == "conf.d/n" and problem.message


@pytest.mark.parametrize(
    "name",
    ["keyconf.xml", ".softtoken.p12", f"{AUTH_KEY}.p12", "tmpconf123456.tmp", "ä" * 127, b"ok"],
)
def test_safe_names(name: str | bytes) -> None:
    assert check_name("conf.d/n", name) is None


def test_name_length_limit_is_in_bytes() -> None:
    assert check_name("n", "a" * 255) is None
    assert check_name("n", "a" * 256) is not None
    assert check_name("n", "ä" * 128) is not None  # 256 bytes in UTF-8


# --------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("conf.d/x", "/etc/shadow"),
        ("conf.d/x", "../../etc/shadow"),
        ("x", "a/../../x"),
        ("conf.d/x", "a/../../x"),
        ("x", ".."),
        ("x", "."),
        ("conf.d/x", "x"),
        ("conf.d/x", "ok\x00"),
        ("conf.d/x", "ok\n"),
        ("conf.d/x", ""),
    ],
)
def test_symlink_refused(path: str, target: str) -> None:
    problem = check_symlink(path, target)
    assert problem is not None and problem.path == path and problem.message


@pytest.mark.parametrize(
    ("path", "target"),
    [("conf.d/x", "../VERSION"), ("signer/a", "softtoken/k.p12"), ("a", "./VERSION")],
)
def test_symlink_accepted(path: str, target: str) -> None:
    assert check_symlink(path, target) is None


def test_symlink_must_resolve_into_tree_when_paths_given() -> None:
    tree = frozenset({"VERSION", "conf.d", "conf.d/x"})
    assert check_symlink("conf.d/x", "../VERSION", tree) is None
    assert check_symlink("conf.d/x", "../missing", tree) is not None
