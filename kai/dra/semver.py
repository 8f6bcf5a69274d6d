"""Semantic versions (semver 2.0.0) as DRA's ``version`` attributes and CEL ``semver()`` use them.

Parsing is strict (no leading ``v``, no leading zeros, three numeric parts), as the
blang/semver parser behind kube-scheduler's CEL library. :func:`semver_key` gives a tuple
whose order is semver precedence (build metadata ignored), so comparisons are plain tuple
comparisons. Used by :mod:`kai.dra.cel` and :mod:`kai.dra.selector`.
"""
from __future__ import annotations

import re

_NUM = r"(0|[1-9]\d*)"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER_RE = re.compile(
    rf"^{_NUM}\.{_NUM}\.{_NUM}(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")


class SemverError(ValueError):
    """Not a semantic version."""


def parse_semver(text: str) -> tuple[int, int, int, tuple]:
    """``(major, minor, patch, prerelease identifiers)``; raises SemverError."""
    m = _SEMVER_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise SemverError(f"invalid semantic version {text!r}")
    pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def semver_key(text: str) -> tuple:
    """A key whose tuple order is semver precedence: a release sorts after its prereleases,
    numeric identifiers before alphanumeric ones."""
    major, minor, patch, pre = parse_semver(text)
    if not pre:
        return (major, minor, patch, 1, ())
    return (major, minor, patch, 0, tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in pre))


def compare_semver(a: str, b: str) -> int:
    ka, kb = semver_key(a), semver_key(b)
    return (ka > kb) - (ka < kb)
