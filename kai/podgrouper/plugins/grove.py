"""Grove (grove.io PodGangSet / PodCliqueSet, and NVIDIA Dynamo through them), as KAI's grove
grouper.

The pod's label ``grove.io/podgang`` names a PodGang (scheduler.grove.io/v1alpha1) in its
namespace: the PodGroup is the PodGang's (``pg-<podgang>-<UID>``, owned by it), with the top
owner's labels and annotations added where the PodGang lacks them. Each
``spec.podgroups[]`` entry is a SubGroup (``minReplicas`` > 0, ``podReferences`` in the same
namespace); ``spec.topologyConstraintGroupConfigs[]`` entries with ``podGroupNames`` become
parent SubGroups (minMember 0) of those. minMember is the sum of the podgroups' minimums.
Topology: the topology named by annotation ``grove.io/topology-name`` (else
``kai.scheduler/topology``) with the ``topologyConstraint.packConstraint`` levels of the
PodGang, of each podgroup and of each group config. Priority: ``spec.priorityClassName``,
then label ``priorityClassName``; label ``kai.scheduler/preemptibility`` sets preemptibility.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.podgrouper.defaults import Context, default_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, SubGroupMetadata, Topology
from kai.podgrouper.objects import Obj, nested
from kai.podgrouper.plugins.common import nested_int

PODGANG_LABEL = "grove.io/podgang"
TOPOLOGY_NAME_ANNOTATION = "grove.io/topology-name"
_PREEMPTIBILITY = {"", C.PREEMPTIBLE, C.NON_PREEMPTIBLE}


def _pack_constraint(obj: dict, topology: str) -> Topology | None:
    pack = nested(obj, "topologyConstraint", "packConstraint")
    if not isinstance(pack, dict) or ("preferred" not in pack and "required" not in pack):
        return None
    if not topology:
        raise GroupingError("topology name cannot be empty when topology constraints are defined")
    return Topology(topology=topology, required=str(pack.get("required") or ""),
                    preferred=str(pack.get("preferred") or ""))


def grove(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    ns = pod.metadata.namespace or "default"
    gang_name = pod.metadata.labels.get(PODGANG_LABEL)
    if gang_name is None:
        raise GroupingError(f"label for podgang name (key: {PODGANG_LABEL}) not found in pod {ns}/{pod.metadata.name}")
    raw = ctx.get("scheduler.grove.io/v1alpha1", "PodGang", ns, gang_name)
    if raw is None:
        raise GroupingError(f"failed to get PodGang {ns}/{gang_name}: not found")
    gang = Obj(raw)
    where = f"PodGang {ns}/{gang_name}"
    meta = default_metadata(ctx, gang, pod)
    ga = gang.annotations
    topology = ga[TOPOLOGY_NAME_ANNOTATION] if TOPOLOGY_NAME_ANNOTATION in ga else ga.get(C.TOPOLOGY, "")
    tc = _pack_constraint(gang.raw.get("spec") or {}, topology)
    if tc is not None:
        meta.topology = Topology(topology=topology, required=tc.required, preferred=tc.preferred)
    pc = gang.get("spec", "priorityClassName")
    if isinstance(pc, str):
        meta.priority_class_name = pc
    if top is not None:
        for k, v in top.labels.items():
            meta.labels.setdefault(k, v)
        for k, v in top.annotations.items():
            meta.annotations.setdefault(k, v)
    # labels/annotations now carried by the PodGroup override the PodGang's spec
    if C.PRIORITY_CLASS_LABEL in meta.labels:
        meta.priority_class_name = meta.labels[C.PRIORITY_CLASS_LABEL]
    if C.PREEMPTIBILITY_LABEL in meta.labels:
        v = meta.labels[C.PREEMPTIBILITY_LABEL]
        if v not in _PREEMPTIBILITY:
            raise GroupingError(f"failed to parse preemptibility from top owner {meta.namespace}/{meta.name}: "
                                f"invalid preemptibility value: {v}")
        meta.preemptibility = v
    ann = meta.annotations
    t = meta.topology
    meta.topology = Topology(topology=t.topology or ann.get(C.TOPOLOGY, ""),
                             required=t.required or ann.get(C.TOPOLOGY_REQUIRED, ""),
                             preferred=t.preferred or ann.get(C.TOPOLOGY_PREFERRED, ""))

    parents, parent_of = _parents(gang, topology, where)
    children, total = _children(gang, ns, topology, parent_of, where)
    meta.subgroups = parents + children
    meta.min_available = total
    return meta


def _parents(gang: Obj, topology: str, where: str) -> tuple[list[SubGroupMetadata], dict[str, str]]:
    configs = gang.get("spec", "topologyConstraintGroupConfigs")
    out: list[SubGroupMetadata] = []
    parent_of: dict[str, str] = {}
    if configs is None:
        return out, parent_of
    if not isinstance(configs, list):
        raise GroupingError(f"failed to parse 'topologyConstraintGroupConfigs' field of {where}")
    for i, c in enumerate(configs):
        if not isinstance(c, dict):
            raise GroupingError(f"invalid structure of spec.topologyConstraintGroupConfigs[{i}] in {where}")
        name = c.get("name")
        if not isinstance(name, str):
            raise GroupingError(f"failed to parse topologyConstraintGroupConfig[{i}]: missing required 'name' field")
        members = c.get("podGroupNames")
        if not isinstance(members, list) or not members:
            continue
        for m in members:
            parent_of[str(m)] = name
        try:
            tc = _pack_constraint(c, topology)
        except GroupingError as exc:
            raise GroupingError(f"failed to parse topologyConstraintGroupConfig[{i}]: failed to parse topology from "
                                f"topologyConstraintGroupConfig {name}. Err: {exc}") from None
        out.append(SubGroupMetadata(name, 0, topology=tc))
    return out, parent_of


def _children(gang: Obj, ns: str, topology: str, parent_of: dict[str, str], where: str
              ) -> tuple[list[SubGroupMetadata], int]:
    groups = gang.get("spec", "podgroups")
    if groups is None:
        return [], 0
    if not isinstance(groups, list):
        raise GroupingError(f"failed to get spec.podgroups from {where}")
    out: list[SubGroupMetadata] = []
    total = 0
    for i, g in enumerate(groups):
        if not isinstance(g, dict):
            raise GroupingError(f"invalid structure of spec.podgroup[{i}] in {where}")
        prefix = f"failed to parse spec.podgroups[{i}] from {where}"
        name = g.get("name")
        if not isinstance(name, str):
            raise GroupingError(f"{prefix}: missing required 'name' field")
        lo = nested_int(g, "minReplicas", where=prefix)
        if lo is None:
            raise GroupingError(f"{prefix}: missing required 'minReplicas' field")
        if lo <= 0:
            raise GroupingError(f"{prefix}: invalid 'minReplicas' field. Must be greater than 0")
        refs = g.get("podReferences")
        if not isinstance(refs, list):
            raise GroupingError(f"{prefix}: missing required 'podReferences' field")
        pods = []
        for j, r in enumerate(refs):
            if not isinstance(r, dict) or not isinstance(r.get("namespace"), str) or not isinstance(r.get("name"), str):
                raise GroupingError(f"invalid spec.podgroup[{i}].podReferences[{j}] in {where}")
            if r["namespace"] != ns:
                raise GroupingError(f"cross-namespace pod reference not allowed: pod {r['namespace']}/{r['name']} cannot "
                                    f"be referenced from PodGang in namespace {ns}")
            pods.append(r["name"])
        out.append(SubGroupMetadata(name, lo, parent=parent_of.get(name), pods=pods,
                                    topology=_pack_constraint(g, topology)))
        total += lo
    return out, total
