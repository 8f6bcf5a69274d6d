"""An unschedulable reason -> its cause, so pending jobs can be grouped by why they wait.

The scheduler explains a job in one sentence (``kai.actions``, ``kai.plugins``), e.g.
``gang of 3 pods: only 0 could be placed; pod a/w-0: 0/6 nodes fit: 5 insufficient
nvidia.com/gpu, 1 untolerated taint dedicated=infer``. Its cause is the leading, largest
term with counts and names removed: ``insufficient nvidia.com/gpu``. Quota checks keep their
KAI reason word (``OverLimit``, ``NonPreemptibleOverQuota``, ``QueueDoesNotExist``).

Used by ``kai status``, ``kai simulate --report`` and the ``kai_unschedulable_podgroups``
metric; it never raises and always answers a short, stable string.
"""
from __future__ import annotations

import re

_PREFIXES = (
    re.compile(r"^gang of \d+ pods: only \d+ could be placed; "),
    re.compile(r"^pod [^\s:]+: "),
    re.compile(r"^in [^:]+: "),
    re.compile(r"^none of \d+ candidate node sets could place [^:]+: (?:[^:]+: )?"),
)
_REASON_WORD = re.compile(r"^([A-Z][A-Za-z]+): ")
_NODES_FIT = re.compile(r"^0/\d+ nodes fit(?: an? [^:]+)?(?:: (.*))?$")
_COUNT = re.compile(r"^\d+ ")
_FIXED = (
    ("GPU sharing is not enabled", "GPU sharing not enabled"),
    ("fewer than its minMember", "gang below minMember (pods missing or gated)"),
    ("more pod(s) than exist to reach minMember", "gang below minMember (pods missing or gated)"),
    ("is not a leaf queue", "queue is not a leaf"),
    ("does not exist", "missing object"),
    ("spec.minMember", "invalid PodGroup"),
    ("not honoured", "field kai does not honour"),
    ("not supported", "field kai does not honour"),
    ("invalid quantity", "invalid pod"),
    ("gpu-fraction", "invalid GPU sharing request"),
    ("gpu-memory", "invalid GPU sharing request"),
)
_MAX = 60


def cause(reason: str) -> str:
    """The cause of one unschedulable ``reason`` (empty text -> ``unknown``)."""
    text = (reason or "").strip()
    if not text:
        return "unknown"
    for _ in range(4):                 # prefixes nest: gang -> pod -> node set
        before = text
        for p in _PREFIXES:
            text = p.sub("", text, count=1)
        if text == before:
            break
    m = _REASON_WORD.match(text)
    if m:
        return m.group(1)
    m = _NODES_FIT.match(text.split("; ")[0])
    if m:
        detail = (m.group(1) or "").split(", ")[0].strip()
        if not detail:
            return "no node fits"
        return _COUNT.sub("", detail)[:_MAX]
    if text.startswith("topology"):
        return "topology"
    for needle, name in _FIXED:
        if needle in text:
            return name
    head = re.split(r"[:;]", text, maxsplit=1)[0]
    return re.sub(r"\d+", "N", head).strip()[:_MAX] or "unknown"


def group_by_cause(items: list[tuple[str, list[str]]]) -> list[dict]:
    """``[(job, reasons)]`` -> ``[{cause, count, jobs}]``, largest first (a job counts once,
    under the cause of its first reason)."""
    groups: dict[str, list[str]] = {}
    for job, reasons in items:
        groups.setdefault(cause(reasons[0] if reasons else ""), []).append(job)
    return [{"cause": c, "count": len(jobs), "jobs": sorted(jobs)}
            for c, jobs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
