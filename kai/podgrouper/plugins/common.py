"""Field readers shared by the grouper plugins (KAI's unstructured.Nested* with its errors)."""
from __future__ import annotations

from typing import Any

from kai.podgrouper.metadata import GroupingError, Topology
from kai.podgrouper.objects import Obj, int_field, nested

MIN_MEMBER_OVERRIDE = "kai.scheduler/batch-min-member"
SEGMENT_SIZE = "kai.scheduler/segment-size"
SEGMENT_REQUIRED = "kai.scheduler/segment-topology-required-placement"
SEGMENT_PREFERRED = "kai.scheduler/segment-topology-preferred-placement"


def nested_int(obj: Any, *path: str, where: str = "") -> int | None:
    """An integer at ``path`` (None when absent); a value of another type is an error."""
    cur = obj.raw if isinstance(obj, Obj) else obj
    for p in path:
        if not isinstance(cur, dict):
            if cur is None:
                return None
            raise GroupingError(f"{where}: {'.'.join(path)}: expected an object at {p!r}")
        if p not in cur:
            return None
        cur = cur[p]
    if cur is None:
        return None
    v = int_field(cur)
    if v is None:
        raise GroupingError(f"{where}: {'.'.join(path)}: expected an integer, got {cur!r}")
    return v


def nested_str(obj: Any, *path: str) -> str | None:
    cur = obj.raw if isinstance(obj, Obj) else obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur if isinstance(cur, str) else None


def template_annotations(spec: Any) -> dict[str, str]:
    """``template.metadata.annotations`` of a replica/worker spec ({} when absent)."""
    ann = nested(spec, "template", "metadata", "annotations")
    return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}


def parse_int(value: str, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise GroupingError(f"invalid {what} {value!r}: not an integer") from None


def min_member_override(obj: Obj) -> int | None:
    """``kai.scheduler/batch-min-member`` on ``obj`` (a positive integer), or None."""
    raw = obj.annotations.get(MIN_MEMBER_OVERRIDE)
    if raw is None:
        return None
    n = parse_int(raw, f"{MIN_MEMBER_OVERRIDE} annotation on {obj.kind} {obj.namespace}/{obj.name}")
    if n < 1:
        raise GroupingError(f"invalid {MIN_MEMBER_OVERRIDE} annotation on {obj.kind} {obj.namespace}/{obj.name}: "
                            f"{raw!r} must be a positive integer")
    return n


def topology_or_none(t: Topology) -> Topology | None:
    return t if (t.required or t.preferred) else None
