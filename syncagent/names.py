"""Pure rules for the names and symlinks in the primary's listing.

Names come from another host, so they are untrusted input to path arithmetic: the listing checks
each one before it is ever joined into a path, and every symlink before anything is fetched.
"""

from __future__ import annotations

import posixpath
import re

from syncagent.errors import Problem

MAX_NAME_BYTES = 255


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def shown(text: str, limit: int = 80) -> str:
    """Quote a name for a message: repr escapes control characters so logs stay one line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def name_problem(name: str | bytes) -> str | None:
    """Why a directory entry name could escape staging or confuse later path joins, if it could."""
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            return "name is not valid UTF-8"
    if name in ("", ".", ".."):
        return f"unsafe name {shown(name)}"
    if "/" in name:
        return f"name {shown(name)} contains '/'"
    if has_control(name):
        return f"name {shown(name)} contains a NUL or control character"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"name is {size} bytes long (limit {MAX_NAME_BYTES})"
    return None


def check_name(path: str, name: str | bytes) -> Problem | None:
    """Refuse the entry ``name`` (shown in messages as ``path``) when it is unsafe."""
    why = name_problem(name)
    return Problem(path, why) if why else None


def _climbs_after_descending(target: str) -> bool:
    """True if '..' follows a normal component ('a/../x').

    Lexical normalisation of 'a/..' is only right if 'a' is a real directory; if 'a' is
    itself a symlink, '..' climbs from wherever it points. Allowing '..' only as leading
    components keeps the lexical answer equal to what the kernel will resolve, as long as
    every link in the tree passes this same check.
    """
    descended = False
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if descended:
                return True
        else:
            descended = True
    return False


def _symlink_problem(path: str, target: str, tree_paths: frozenset[str] | None) -> str | None:
    if not target:
        return "symlink target is empty"
    if has_control(target):
        return "symlink target contains a NUL or control character"
    if target.startswith("/"):
        return f"symlink target {shown(target)} is absolute"
    if _climbs_after_descending(target):
        return f"symlink target {shown(target)} climbs out of a subdirectory ('x/..')"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"symlink target {shown(target)} escapes the tree"
    if resolved in (".", posixpath.normpath(path)):
        return f"symlink target {shown(target)} points at the tree root or at itself"
    if tree_paths is not None and resolved not in tree_paths:
        return f"symlink target {shown(target)} resolves to {shown(resolved)}, not in the tree"
    return None


def check_symlink(
    path: str, target: str, tree_paths: frozenset[str] | None = None
) -> Problem | None:
    """Refuse a symlink whose target could reach outside the applied tree.

    A link to /etc/shadow or ../../ would let the primary make secondary services read
    (or the agent overwrite) files outside /etc/xroad.
    """
    why = _symlink_problem(path, target, tree_paths)
    return Problem(path, why) if why else None
