"""Manifest builders for the volume tests: nodes with zone labels, PVs, PVCs, StorageClasses,
CSINodes, and pods that mount claims (plain dicts, as ``kai simulate`` reads them)."""
from __future__ import annotations

from typing import Any

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def node(name: str, zone: str = "", cpu: str = "16", labels: dict | None = None) -> dict:
    lab = {HOST: name, **({ZONE: zone} if zone else {}), **(labels or {})}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": lab},
            "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"}}}


def storage_class(name: str, provisioner: str = "kubernetes.io/no-provisioner", mode: str = "WaitForFirstConsumer",
                  zones: list[str] | None = None) -> dict:
    sc: dict[str, Any] = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
                          "provisioner": provisioner, "volumeBindingMode": mode}
    if zones is not None:
        sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE, "values": list(zones)}]}]
    return sc


def pv(name: str, size: str = "10Gi", cls: str = "local", on: str | None = None, modes=("ReadWriteOnce",),
       claim: str | None = None, labels: dict | None = None, csi: tuple[str, str] | None = None,
       phase: str | None = None, zone_label: str | None = None, volume_mode: str | None = None) -> dict:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls}
    if on is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOST, "operator": "In", "values": [on]}]}]}}
    if claim is not None:
        ns, cname = claim.split("/") if "/" in claim else ("default", claim)
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": ns, "name": cname}
    if csi is not None:
        spec["csi"] = {"driver": csi[0], "volumeHandle": csi[1]}
    if volume_mode is not None:
        spec["volumeMode"] = volume_mode
    meta: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if zone_label is not None:
        meta["labels"][ZONE] = zone_label
    doc = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}
    if phase is not None:
        doc["status"] = {"phase": phase}
    return doc


def pvc(name: str, size: str = "5Gi", cls: str | None = "local", modes=("ReadWriteOnce",), volume: str = "",
        ns: str = "default", selected: str | None = None, selector: dict | None = None, phase: str | None = None,
        volume_mode: str | None = None, annotations: dict | None = None) -> dict:
    spec: dict[str, Any] = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    if selector is not None:
        spec["selector"] = selector
    if volume_mode is not None:
        spec["volumeMode"] = volume_mode
    ann = dict(annotations or {})
    if selected is not None:
        ann["volume.kubernetes.io/selected-node"] = selected
    doc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": ns, "annotations": ann}, "spec": spec}
    if phase is not None:
        doc["status"] = {"phase": phase}
    return doc


def csinode(name: str, driver: str, count: int | None) -> dict:
    d: dict[str, Any] = {"name": driver, "nodeID": name}
    if count is not None:
        d["allocatable"] = {"count": count}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": name},
            "spec": {"drivers": [d]}}


def vpod(name: str, claims=(), ephemeral: dict | None = None, node_name: str = "", ns: str = "default",
         group: str | None = None, cpu: str = "1", extra: dict | None = None) -> dict:
    """A pod mounting ``claims`` (names) and, with ``ephemeral``, a generic ephemeral volume ``scratch``
    whose claim template spec is ``ephemeral``. Its own PodGroup unless ``group`` is given."""
    vols: list[dict] = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    if ephemeral is not None:
        vols.append({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": ephemeral}}})
    spec: dict[str, Any] = {"schedulerName": "kai-scheduler",
                            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}},
                                            "volumeMounts": [{"name": v["name"], "mountPath": f"/{v['name']}"}
                                                             for v in vols]}],
                            "volumes": vols, **(extra or {})}
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if group:
        meta["annotations"] = {"pod-group-name": group}
    if node_name:
        spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": "Running" if node_name else "Pending"}}


def podgroup(name: str, min_member: int, ns: str = "default", queue: str = "default-queue") -> dict:
    return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": name, "namespace": ns},
            "spec": {"minMember": min_member, "queue": queue}}
