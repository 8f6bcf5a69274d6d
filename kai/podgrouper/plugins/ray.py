"""KubeRay (ray.io v1 and v1alpha1): RayCluster, RayJob, RayService, as KAI's ray groupers.

The PodGroup belongs to the top owner (default fields); its gang comes from the RayCluster:
the top owner itself, or for a RayJob the cluster named in ``status.rayClusterName``, for a
RayService in ``status.activeServiceStatus.rayClusterName`` (else
``status.pendingServiceStatus.rayClusterName``). minMember is 1 (head) plus, per worker
group that is not suspended, ``minReplicas`` (when > 0, else ``replicas``) times
``numOfHosts``. SubGroups: ``headgroup`` (1) and one per worker group, named by its
``groupName`` (``worker-group-<i>`` when empty), with the topology constraint of the group's
pod template annotations; a pod joins the SubGroup named by its ``ray.io/group`` label. A
PodGroup created before SubGroups existed (present without any) stays without them. Label
``ray.io/priority-class-name`` on the top owner sets the priority class.
"""
from __future__ import annotations

import structlog

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.podgrouper.defaults import Context, default_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, SubGroupMetadata, Topology
from kai.podgrouper.objects import Obj
from kai.podgrouper.plugins.common import nested_int, template_annotations

log = structlog.get_logger("kai.podgrouper")

PRIORITY_LABEL = "ray.io/priority-class-name"
GROUP_LABEL = "ray.io/group"
HEAD_GROUP = "headgroup"
CLUSTER_NAME_PATHS = {"RayCluster": (), "RayJob": (("status", "rayClusterName"),),
                      "RayService": (("status", "activeServiceStatus", "rayClusterName"),
                                     ("status", "pendingServiceStatus", "rayClusterName"))}


def ray(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    cluster = _cluster(ctx, top)
    meta = default_metadata(ctx, top, pod)
    meta.min_available, subgroups = gang(cluster)
    if _use_subgroups(ctx, meta.namespace, meta.name):
        meta.subgroups = subgroups
    if PRIORITY_LABEL in top.labels:
        meta.priority_class_name = top.labels[PRIORITY_LABEL]
    if meta.subgroups:
        group = pod.metadata.labels.get(GROUP_LABEL)
        sg = meta.subgroup(group) if group is not None else None
        if sg is None:
            log.info("ray pod has no SubGroup", pod=f"{pod.metadata.namespace}/{pod.metadata.name}", group=group)
        else:
            sg.pods.append(pod.metadata.name)
    return meta


def _cluster(ctx: Context, top: Obj) -> Obj:
    paths = CLUSTER_NAME_PATHS.get(top.kind, ())
    if not paths:
        return top
    name = None
    for path in paths:
        name = top.get(*path)
        if name is not None:
            break
    if not isinstance(name, str) or not name:
        raise GroupingError(f"failed to extract rayClusterName for {top.namespace}/{top.name} of kind {top.kind}. "
                            f"Please make sure that the ray-operator is up and a rayCluster child-object has been created")
    raw = ctx.get(top.api_version, "RayCluster", top.namespace, name)
    if raw is None:
        raise GroupingError(f'rayclusters.ray.io "{name}" not found')
    return Obj(raw)


def _use_subgroups(ctx: Context, namespace: str, name: str) -> bool:
    existing = ctx.get("scheduling.run.ai/v2alpha2", "PodGroup", namespace, name)
    if existing is None:
        return True
    return bool((existing.get("spec") or {}).get("subGroups"))


def _template_topology(spec: dict, where: str) -> Topology | None:
    ann = template_annotations(spec)
    required, preferred = ann.get(C.TOPOLOGY_REQUIRED, ""), ann.get(C.TOPOLOGY_PREFERRED, "")
    if not required and not preferred:
        return None
    topology = ann.get(C.TOPOLOGY, "")
    if not topology:
        raise GroupingError(f"topology annotation ({C.TOPOLOGY}) is required for {where} when topology placement "
                            f"annotations are set")
    return Topology(topology=topology, required=required, preferred=preferred)


def gang(cluster: Obj) -> tuple[int, list[SubGroupMetadata]]:
    """(minMember, SubGroups) of a RayCluster spec."""
    head = cluster.get("spec", "headGroupSpec")
    subgroups = [SubGroupMetadata(HEAD_GROUP, 1, topology=_template_topology(head, "headGroupSpec")
                                  if isinstance(head, dict) else None)]
    total = 1
    groups = cluster.get("spec", "workerGroupSpecs")
    if not isinstance(groups, list):
        return total, subgroups
    for i, g in enumerate(groups):
        if not isinstance(g, dict):
            raise GroupingError(f"failed to parse worker group spec {i}")
        if g.get("suspended") is True:
            continue
        where = f"{cluster!r} workerGroupSpecs[{i}]"
        desired = nested_int(g, "replicas", where=where) or 0
        lo = nested_int(g, "minReplicas", where=where) or 0
        if lo > desired:
            raise GroupingError(f"Given {desired} replicas and {lo} minReplicas. Please fix the replicas field for "
                                f"group number {i}")
        if lo == 0 and desired == 0:
            continue
        hosts = nested_int(g, "numOfHosts", where=where)
        hosts = 1 if hosts is None else hosts
        n = (lo if lo > 0 else desired) * hosts
        total += n
        name = g.get("groupName") if isinstance(g.get("groupName"), str) and g.get("groupName") else f"worker-group-{i}"
        subgroups.append(SubGroupMetadata(name, n, topology=_template_topology(g, f"workerGroupSpecs.{name}")))
    return total, subgroups
