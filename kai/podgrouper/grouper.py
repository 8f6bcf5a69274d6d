"""Derive a PodGroup for a pod from its top owner, with KAI's names, defaults and minMember.

``group_for_pod(pod, owners)`` returns the PodGroup manifest the pod-grouper would create
(``pg-<owner>-<ownerUID>``) or None when the pod names its PodGroup itself. ``owners``
maps (kind, namespace, name) to owner manifests (dicts) when they are known; an owner only
known through an ownerReference still groups correctly, with kind defaults.
"""
from __future__ import annotations

from typing import Any

from kai.api import constants as C
from kai.api.k8s import ObjectMeta, OwnerReference, Pod, PodGroup, PodGroupSpec, TopologyConstraint

# owner kind -> default priority class (KAI: Deployment/Knative -> inference, Notebook -> build)
_DEFAULT_PRIORITY = {"Deployment": "inference", "ReplicaSet": "inference", "Service": "inference",
                     "Notebook": "build"}
# kinds whose pods each get their own PodGroup
_PER_POD = {"Deployment", "ReplicaSet"}


def _controller_ref(meta: ObjectMeta) -> OwnerReference | None:
    for ref in meta.owner_references:
        if ref.controller:
            return ref
    return meta.owner_references[0] if meta.owner_references else None


def top_owner(pod: Pod, owners: dict[tuple[str, str, str], dict[str, Any]]) -> tuple[str, str, str, dict]:
    """(kind, name, uid, labels+annotations source) of the pod's top owner."""
    ns = pod.metadata.namespace or "default"
    kind, name, uid, obj = "Pod", pod.metadata.name, pod.metadata.uid, None
    ref = _controller_ref(pod.metadata)
    seen = 0
    while ref is not None and seen < 16:
        seen += 1
        kind, name, uid = ref.kind, ref.name, ref.uid
        obj = owners.get((kind, ns, name))
        if obj is None:
            break
        meta = obj.get("metadata", {})
        parents = [OwnerReference(kind=r.get("kind", ""), name=r.get("name", ""), uid=r.get("uid", ""),
                                  controller=r.get("controller"))
                   for r in meta.get("ownerReferences", []) or []]
        ref = next((r for r in parents if r.controller), parents[0] if parents else None)
    return kind, name, uid or name, obj or {}


def _min_member(kind: str, obj: dict) -> int:
    spec = obj.get("spec", {}) if obj else {}
    if kind in ("PyTorchJob", "TFJob", "XGBoostJob", "JAXJob", "MPIJob"):
        policy = (spec.get("runPolicy", {}) or {}).get("schedulingPolicy", {}) or spec.get("schedulingPolicy", {}) or {}
        if policy.get("minAvailable"):
            return int(policy["minAvailable"])
        specs = spec.get("pytorchReplicaSpecs") or spec.get("tfReplicaSpecs") or spec.get("mpiReplicaSpecs") or {}
        return max(1, sum(int(r.get("replicas", 1)) for r in specs.values()))
    if kind == "LeaderWorkerSet":
        return int((spec.get("leaderWorkerTemplate") or {}).get("size", 1))
    return 1


def _topology_constraint(pod: Pod, obj: dict) -> TopologyConstraint | None:
    """The top owner's ``kai.scheduler/topology*`` annotations (the pod's own when the owner
    is unknown or lacks them) as the PodGroup's topologyConstraint."""
    ann = {**pod.metadata.annotations, **((obj.get("metadata", {}) or {}).get("annotations", {}) or {})}
    topology = ann.get(C.TOPOLOGY, "")
    required = ann.get(C.TOPOLOGY_REQUIRED, "")
    preferred = ann.get(C.TOPOLOGY_PREFERRED, "")
    if not topology and not required and not preferred:
        return None
    return TopologyConstraint(topology=str(topology), required_topology_level=str(required),
                              preferred_topology_level=str(preferred))


def group_for_pod(pod: Pod, owners: dict[tuple[str, str, str], dict[str, Any]] | None = None) -> PodGroup | None:
    """The PodGroup KAI's pod-grouper would make for ``pod``; None if the pod names its own."""
    if C.POD_GROUP_ANNOTATION in pod.metadata.annotations:
        return None
    owners = owners or {}
    kind, name, uid, obj = top_owner(pod, owners)
    src_labels = dict((obj.get("metadata", {}) or {}).get("labels", {}) or {})
    # the pod's own labels count too (KAI reads them from the top owner or the pod)
    labels = {**pod.metadata.labels, **src_labels}
    if kind in _PER_POD:
        pg_name = f"pg-{pod.metadata.name}-{pod.metadata.uid or pod.metadata.name}"
    else:
        pg_name = f"pg-{name}-{uid}"
    queue = labels.get(C.QUEUE_LABEL) or labels.get(C.LEGACY_QUEUE_LABEL) or C.DEFAULT_QUEUE
    priority = (labels.get(C.PRIORITY_CLASS_LABEL) or pod.spec.priority_class_name
                or _DEFAULT_PRIORITY.get(kind, "train"))
    return PodGroup(
        metadata=ObjectMeta(name=pg_name, namespace=pod.metadata.namespace or "default",
                            uid=f"{pg_name}-uid", creation_timestamp=pod.metadata.creation_timestamp,
                            labels={k: v for k, v in labels.items() if k in (C.QUEUE_LABEL,)}),
        spec=PodGroupSpec(min_member=_min_member(kind, obj), queue=queue, priority_class_name=priority,
                          preemptibility=labels.get(C.PREEMPTIBILITY_LABEL, ""),
                          topology_constraint=_topology_constraint(pod, obj)),
    )
