"""What a grouper decides for one pod: the PodGroup's metadata, and how it becomes a PodGroup.

A grouper plugin (``kai.podgrouper.plugins``) returns a :class:`PodGroupMetadata` for a pod:
name, owner, queue, priority, preemptibility, minMember, topology and SubGroups. KAI's
groupers list in each SubGroup only the pods they know of (usually the pod being grouped);
:func:`subgroup_of` finds the pod's SubGroup, whose name the pod-grouper writes into the
pod's ``kai.scheduler/subgroup-name`` label. :func:`to_podgroup` renders the metadata as the
PodGroup object KAI's handler creates (``pkg/podgrouper/podgroup/handler.go``).

Called by ``kai.podgrouper.hub`` (building), ``kai.podgrouper.controller`` (live apply) and
``kai.podgrouper.batch`` (``kai simulate``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kai.api.k8s import ObjectMeta, OwnerReference, PodGroup, PodGroupSpec, SubGroup, TopologyConstraint


class GroupingError(ValueError):
    """The pod cannot be grouped (bad owner spec, missing label, unreadable owner); the
    message says which object and field, as KAI's pod-grouper event does."""


@dataclass
class Topology:
    """A topology constraint: ``topology`` names the Topology object, levels are node labels."""
    topology: str = ""
    required: str = ""
    preferred: str = ""

    def constraint(self) -> TopologyConstraint:
        return TopologyConstraint(topology=self.topology, required_topology_level=self.required,
                                  preferred_topology_level=self.preferred)


@dataclass
class SubGroupMetadata:
    name: str
    min_available: int
    parent: str | None = None
    pods: list[str] = field(default_factory=list)       # names of the pods known to belong here
    topology: Topology | None = None


@dataclass
class PodGroupMetadata:
    name: str
    namespace: str
    owner: OwnerReference
    queue: str
    priority_class_name: str
    preemptibility: str = ""
    min_available: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    subgroups: list[SubGroupMetadata] = field(default_factory=list)
    topology: Topology = field(default_factory=Topology)

    def subgroup(self, name: str) -> SubGroupMetadata | None:
        return next((s for s in self.subgroups if s.name == name), None)


def subgroup_of(meta: PodGroupMetadata, pod_namespace: str, pod_name: str) -> str:
    """The SubGroup that lists the pod (first match, as KAI's FindSubGroupForPod), or ""."""
    if meta.namespace != pod_namespace:
        return ""
    for sg in meta.subgroups:
        if pod_name in sg.pods:
            return sg.name
    return ""


def _constraint(t: Topology | None) -> TopologyConstraint | None:
    if t is None or not (t.topology or t.required or t.preferred):
        return None
    return t.constraint()


def _read_back(n: int) -> int:
    # a zero minMember is omitted on the wire (Go's omitempty) and reads back as the default
    return n if n > 0 else 1


def to_podgroup(meta: PodGroupMetadata, uid: str = "", creation_timestamp: str | None = None) -> PodGroup:
    """The PodGroup KAI's pod-grouper creates for ``meta`` (owner reference, labels and
    annotations inherited from the owner, spec with SubGroups in the grouper's order)."""
    owner = meta.owner
    refs = [owner] if owner.kind and owner.name else []
    return PodGroup(
        metadata=ObjectMeta(name=meta.name, namespace=meta.namespace, uid=uid or f"{meta.name}-uid",
                            creation_timestamp=creation_timestamp, labels=dict(meta.labels),
                            annotations=dict(meta.annotations), owner_references=refs),
        spec=PodGroupSpec(
            min_member=_read_back(meta.min_available), queue=meta.queue, priority_class_name=meta.priority_class_name,
            preemptibility=meta.preemptibility, topology_constraint=_constraint(meta.topology),
            sub_groups=[SubGroup(name=s.name, min_member=_read_back(s.min_available), parent=s.parent,
                                 topology_constraint=_constraint(s.topology)) for s in meta.subgroups]))


def podgroup_body(meta: PodGroupMetadata) -> dict:
    """``meta`` as the JSON body of a PodGroup create/update (no uid, no timestamps)."""
    import msgspec

    body = msgspec.to_builtins(to_podgroup(meta))
    body["apiVersion"], body["kind"] = "scheduling.run.ai/v2alpha2", "PodGroup"
    m = body["metadata"]
    m.pop("uid", None)
    m.pop("creationTimestamp", None)
    spec = body.setdefault("spec", {})
    # as Go's ``omitempty``: a zero minMember (an inner SubGroup, a Grove parent) is left out
    for target, value in [(spec, meta.min_available)] + list(zip(spec.get("subGroups", []),
                                                                  (s.min_available for s in meta.subgroups))):
        if value > 0:
            target["minMember"] = value
        else:
            target.pop("minMember", None)
    return body
