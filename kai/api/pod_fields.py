"""The pod fields that decide where a pod may run, and which of them kai honours.

kube-scheduler's filters read these PodSpec fields: nodeName, nodeSelector, affinity
(node, pod, pod anti), tolerations, topologySpreadConstraints, containers' hostPorts,
volumes (PVCs, generic ephemeral, in-tree disks), resourceClaims, schedulingGates and the
resources (containers, init containers, overhead, pod-level). kai honours a field only when
its filter is implemented; ``unhonoured`` names every field of a pod that is set but not
honoured yet, and ``PodInfo`` turns the list into the pod's pending reason, so such a pod
waits instead of being placed blindly (fail closed). A feature that lands moves its row from
``NOT_HONOURED`` into ``HONOURED`` together with its tests.

Called by ``kai.api.pod_info.PodInfo`` for every pod kai schedules.
"""
from __future__ import annotations

from kai.api.k8s import Pod

#: field -> where it is honoured (for docs and the scheduler's start-up report)
HONOURED: dict[str, str] = {
    "spec.nodeName": "pods already bound are charged to their node",
    "spec.nodeSelector": "kai.cache.node_table (static node mask)",
    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution": "kai.cache.node_table",
    "spec.tolerations": "kai.cache.node_table (NoSchedule / NoExecute taints, cordon)",
    "spec.schedulingGates": "gated pods wait and do not count for their gang",
    "spec.containers[].resources": "kai.api.pod_info.pod_requests",
    "spec.initContainers[].resources": "kai.api.pod_info.pod_requests (sidecars included)",
    "spec.overhead": "kai.api.pod_info.pod_requests",
    "spec.resources": "kai.api.pod_info.pod_requests (pod-level requests win per resource)",
    "spec.priority / priorityClassName / preemptionPolicy": "kai.plugins.priority",
    "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution":
        "kai.plugins.nodeaffinity (score)",
    "spec.affinity.podAffinity": "kai.plugins.podaffinity (filter and score)",
    "spec.affinity.podAntiAffinity": "kai.plugins.podaffinity (filter and score)",
    "spec.topologySpreadConstraints": "kai.plugins.topologyspread (filter and score)",
    "spec.containers[].ports[].hostPort": "kai.plugins.nodeports",
    "spec.volumes[].persistentVolumeClaim": "kai.plugins.volumebinding (VolumeBinding, VolumeRestrictions, "
                                            "VolumeZone, NodeVolumeLimits; the binder's PreBind)",
    "spec.volumes[].ephemeral": "kai.plugins.volumebinding (the pod's own claim <pod>-<volume>)",
    "spec.volumes[].configMap / projected, env[].valueFrom.configMapKeyRef, envFrom[].configMapRef":
        "kai.plugins.configmaps (KAI's ConfigMap predicate)",
    "spec.resourceClaims": "kai.plugins.dynamicresources (DRA: filter, device allocation, binder writes the claims)",
    "spec.containers[].resources.claims": "kai.plugins.dynamicresources (the claims the pod's entries name)",
}

#: field -> why kai does not honour it yet (a pod that sets it waits with this reason)
NOT_HONOURED: dict[str, str] = {
    "spec.volumes[] (in-tree disk)": "in-tree disk volume sources are not scheduled by kai; use a CSI driver",
}

_IN_TREE_DISKS = ("gce_persistent_disk", "aws_elastic_block_store", "azure_disk", "azure_file", "cinder",
                  "rbd", "iscsi", "portworx_volume", "vsphere_volume", "photon_persistent_disk", "scale_io",
                  "storageos", "flocker")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.upper() if w == "io" else w.capitalize() for w in rest)


def set_fields(pod: Pod) -> list[str]:
    """Scheduling-relevant fields the pod sets that are not in ``HONOURED``, as
    ``field: detail`` strings (paths name containers and volumes)."""
    spec = pod.spec
    out: list[str] = []
    if spec.resource_claims:
        out.append("spec.resourceClaims: " + ", ".join(c.name or "?" for c in spec.resource_claims))
    for kind, containers in (("containers", spec.containers), ("initContainers", spec.init_containers)):
        for c in containers:
            if c.resources.claims:
                out.append(f"spec.{kind}[{c.name}].resources.claims")
            if kind == "initContainers" and c.restart_policy != "Always":
                continue                       # only sidecars keep host ports (kube-scheduler)
            for p in c.ports:
                if p.host_port > 0:
                    out.append(f"spec.{kind}[{c.name}].ports[].hostPort: {p.host_port}/{p.protocol or 'TCP'}")
    aff = spec.affinity
    if aff is not None:
        for name, pa in (("podAffinity", aff.pod_affinity), ("podAntiAffinity", aff.pod_anti_affinity)):
            if pa is not None and (pa.required_during_scheduling_ignored_during_execution
                                   or pa.preferred_during_scheduling_ignored_during_execution):
                out.append(f"spec.affinity.{name}")
    if spec.topology_spread_constraints:
        out.append("spec.topologySpreadConstraints")
    for v in spec.volumes:
        if v.persistent_volume_claim is not None:
            out.append(f"spec.volumes[{v.name}].persistentVolumeClaim: {v.persistent_volume_claim.claim_name}")
        if v.ephemeral is not None:
            out.append(f"spec.volumes[{v.name}].ephemeral")
        for src in _IN_TREE_DISKS:
            if getattr(v, src) is not None:
                out.append(f"spec.volumes[{v.name}].{_camel(src)} (in-tree disk)")
    return out


def _row(field: str) -> str | None:
    """The NOT_HONOURED row a ``set_fields`` entry falls under, or None when honoured."""
    path = field.split(":", 1)[0]
    if path.startswith("spec.resourceClaims"):
        return "spec.resourceClaims"
    if path.endswith(".resources.claims"):
        return "spec.containers[].resources.claims"
    if ".ports[].hostPort" in path:
        return "spec.containers[].ports[].hostPort"
    if path.startswith("spec.volumes[") and "(in-tree disk)" in field:
        return "spec.volumes[] (in-tree disk)"
    if path.startswith("spec.volumes["):
        return "spec.volumes[]." + path.rsplit(".", 1)[1]
    return path if path in NOT_HONOURED else None


def unhonoured(pod: Pod) -> list[str]:
    """``field: why`` for every set field kai does not honour yet (empty: all honoured)."""
    out = []
    for field in set_fields(pod):
        row = _row(field)
        if row is not None and row in NOT_HONOURED:
            out.append(f"{field} ({NOT_HONOURED[row]})")
    return out
