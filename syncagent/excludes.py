"""Which paths the agent owns, and which are node-local (never read, changed or deleted).

The profiles' lists of node-local paths are X-Road knowledge and live in xroad/paths.py.

Patterns follow rsync's filter rules, because operators migrate their ``--exclude`` lists:
a leading ``/`` anchors at the tree root, a trailing ``/`` matches directories only, ``*``
stays inside one path component and ``**`` crosses components; a pattern without an inner
``/`` matches the last component at any depth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern[str]
    dir_only: bool
    anchored: bool


@cache
def compile_pattern(text: str) -> Pattern:
    """Translate one rsync-style pattern to a regex over relative posix paths."""
    if not text or text in ("/", "//"):
        raise ValueError(f"empty pattern {text!r}")
    anchored = text.startswith("/")
    dir_only = text.endswith("/")
    body = text.strip("/")
    parts: list[str] = []
    i = 0
    while i < len(body):
        if body.startswith("**", i):
            parts.append(".*")
            i += 2
        elif body[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif body[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(body[i]))
            i += 1
    core = "".join(parts)
    prefix = "" if anchored else "(?:.*/)?"
    return Pattern(text, re.compile(f"{prefix}{core}"), dir_only, anchored)


def matches(pattern: Pattern, path: str, is_dir: bool) -> bool:
    if pattern.dir_only and not is_dir:
        return False
    return pattern.regex.fullmatch(path) is not None


def covers(patterns: Iterable[str], path: str) -> bool:
    """Whether a changed path is named by one of ``patterns``, itself or through a directory
    above it ("/conf.d/" covers every file in conf.d): how reload rules and the X-Road
    programs' read lists are matched."""
    for text in patterns:
        pattern = compile_pattern(text)
        if matches(pattern, path, False) or matches(pattern, path, True):
            return True
        parts = path.split("/")[:-1]
        if any(matches(pattern, "/".join(parts[: i + 1]), True) for i in range(len(parts))):
            return True
    return False


def _union(patterns: tuple[Pattern, ...], is_dir: bool) -> re.Pattern[str] | None:
    """One regex that fully matches what any of ``patterns`` fully matches."""
    chosen = [p.regex.pattern for p in patterns if is_dir or not p.dir_only]
    return re.compile("|".join(f"(?:{c})" for c in chosen)) if chosen else None


@dataclass(frozen=True)
class PathFilter:
    """Decides, for a relative path, whether the agent manages it.

    ``protected`` paths (the state dir) can never be included back; ``include`` overrides
    ``exclude`` so an operator can take back one file of a profile's node-local list.
    """

    exclude: tuple[Pattern, ...]
    include: tuple[Pattern, ...] = ()
    protected: tuple[Pattern, ...] = ()

    @classmethod
    def build(
        cls,
        node_local: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        include: tuple[str, ...] = (),
        protected: tuple[str, ...] = (),
    ) -> PathFilter:
        """``node_local``: a profile's list (xroad.PROFILES); ``exclude``: the operator's."""
        return cls(
            tuple(compile_pattern(p) for p in (*node_local, *exclude)),
            tuple(compile_pattern(p) for p in include),
            tuple(compile_pattern(p) for p in protected),
        )

    @cached_property
    def _unions(self) -> dict[tuple[str, bool], re.Pattern[str] | None]:
        """Each group's patterns as one regex, for files and for directories: the walk asks
        for every entry of the tree (10,000 in a large one), a pattern at a time was the cost."""
        groups = {"protected": self.protected, "include": self.include, "exclude": self.exclude}
        return {
            (name, is_dir): _union(patterns, is_dir)
            for name, patterns in groups.items()
            for is_dir in (False, True)
        }

    def _hit(self, group: str, path: str, is_dir: bool) -> bool:
        regex = self._unions[group, is_dir]
        return regex is not None and regex.fullmatch(path) is not None

    def excluded(self, path: str, is_dir: bool) -> bool:
        if self._hit("protected", path, is_dir):
            return True
        if self._hit("include", path, is_dir):
            return False
        return self._hit("exclude", path, is_dir)

    def descend(self, path: str) -> bool:
        """Whether a walk should enter directory ``path``.

        An excluded directory is entered only when an anchored include names something below
        it, so ``include = ["/globalconf/instance-identifier"]`` works as in rsync.
        """
        if self._hit("protected", path, True):
            return False
        if not self.excluded(path, True):
            return True
        return any(p.anchored and p.text.lstrip("/").startswith(path + "/") for p in self.include)
