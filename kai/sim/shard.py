"""``kai simulate --partition-label-value``: the objects one scheduling shard would see.

Applies the live scheduler's partition rules (kai.cache.scope) to loaded manifests before the
simulation: Nodes, Queues and PodGroups outside the partition are dropped; pods bound to a
dropped node go with it; a pending pod stays when its PodGroup (annotation) is in the
partition, or, not grouped yet, when its own labels are. Called by ``kai.cli`` only.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.cache.scope import Scope
from kai.sim.loader import Manifests


def select_partition(m: Manifests, scope: Scope) -> None:
    """Narrow ``m`` in place to ``scope``'s partition; one note says what was left out."""
    if scope.partition.everything:
        return
    objs = m.objects
    dropped: dict[str, int] = {}

    def keep(kind: str, pred) -> set[str]:
        before = objs.get(kind, [])
        objs[kind] = [o for o in before if pred(o)]
        if len(objs[kind]) != len(before):
            dropped[kind] = len(before) - len(objs[kind])
        return {f"{o.metadata.namespace or 'default'}/{o.metadata.name}" if o.metadata.namespace is not None
                else o.metadata.name for o in objs[kind]}

    nodes = {o.metadata.name for o in objs.get("Node", []) if scope.in_partition(o.metadata.labels)}
    keep("Node", lambda o: o.metadata.name in nodes)
    keep("Queue", lambda o: scope.in_partition(o.metadata.labels))
    groups = {f"{o.metadata.namespace or 'default'}/{o.metadata.name}"
              for o in objs.get("PodGroup", []) if scope.in_partition(o.metadata.labels)}
    keep("PodGroup", lambda o: f"{o.metadata.namespace or 'default'}/{o.metadata.name}" in groups)

    def pod_in(p) -> bool:
        if p.spec.node_name:
            return p.spec.node_name in nodes
        pg = p.metadata.annotations.get(C.POD_GROUP_ANNOTATION)
        if pg:
            return f"{p.metadata.namespace or 'default'}/{pg}" in groups
        return scope.in_partition(p.metadata.labels)

    keep("Pod", pod_in)
    if dropped:
        what = ", ".join(f"{n} {k}(s)" for k, n in sorted(dropped.items()))
        m.notes.append(f"partition {scope.node_pool!r} ({scope.node_pool_label_key}): left out {what} "
                       f"of other partitions")
