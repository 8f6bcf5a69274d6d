"""KAI snapshots: the ZIP KAI-Scheduler's ``snapshot`` plugin serves at ``GET /get-snapshot``.

The archive holds one file, ``snapshot.json``::

    {"config":          KAI's SchedulerConfiguration (actions, tiers, queueDepthPerAction, ...),
     "schedulerParams": the scheduler's flags (maxNumberConsolidationPreemptees,
                        allowConsolidatingReclaim, globalDefaultStalenessGracePeriod (ns),
                        queueLabelKey, schedulerName, ...),
     "rawObjects":      {"pods": [...], "nodes": [...], "queues": [...], "podGroups": [...],
                         "bindRequests": [...], "priorityClasses": [...], "configMaps": [...],
                         "persistentVolumeClaims", "csiStorageCapacities", "storageClasses",
                         "csiDrivers", "resourceClaims", "resourceSlices", "deviceClasses",
                         "topologies"},
     "discovery":       server version and API resources (not used)}

The raw objects are listed from informers, so they usually carry no ``kind`` /
``apiVersion``: ``read_snapshot`` sets them from the list they come in. A BindRequest that
has not failed is what KAI takes as the pod's placement until the pod is bound, so its pod
is put on ``spec.selectedNode`` (with its shared-GPU groups as the binder labels them);
BindRequests are not passed on as objects. Called by ``kai.sim.loader`` for ``*.zip`` paths.
"""
from __future__ import annotations

import json
import zipfile

SNAPSHOT_FILE = "snapshot.json"
GPU_GROUP_LABEL = "runai-gpu-group"

#: rawObjects key -> (apiVersion, kind)
RAW_KINDS: dict[str, tuple[str, str]] = {
    "pods": ("v1", "Pod"),
    "nodes": ("v1", "Node"),
    "queues": ("scheduling.run.ai/v2", "Queue"),
    "podGroups": ("scheduling.run.ai/v2alpha2", "PodGroup"),
    "bindRequests": ("scheduling.run.ai/v1alpha2", "BindRequest"),
    "priorityClasses": ("scheduling.k8s.io/v1", "PriorityClass"),
    "configMaps": ("v1", "ConfigMap"),
    "persistentVolumeClaims": ("v1", "PersistentVolumeClaim"),
    "csiStorageCapacities": ("storage.k8s.io/v1", "CSIStorageCapacity"),
    "storageClasses": ("storage.k8s.io/v1", "StorageClass"),
    "csiDrivers": ("storage.k8s.io/v1", "CSIDriver"),
    "resourceClaims": ("resource.k8s.io/v1", "ResourceClaim"),
    "resourceSlices": ("resource.k8s.io/v1", "ResourceSlice"),
    "deviceClasses": ("resource.k8s.io/v1", "DeviceClass"),
    "topologies": ("kai.scheduler/v1alpha1", "Topology"),
}


class SnapshotError(ValueError):
    """Unusable snapshot; ``str()`` names the archive and what is wrong."""


class Snapshot:
    """A KAI snapshot read from its ZIP: the objects (with kind/apiVersion set, each with a
    label such as ``rawObjects.pods[3]``), the scheduler config document (KAI format, or None)
    and the scheduler params (a dict, possibly empty)."""

    def __init__(self, objects: list[tuple[str, dict]], config: dict | None, params: dict,
                 applied_bind_requests: int) -> None:
        self.objects = objects
        self.config = config
        self.params = params
        self.applied_bind_requests = applied_bind_requests


def _read_json(path: str) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            name = SNAPSHOT_FILE if SNAPSHOT_FILE in names else next(
                (n for n in names if n.endswith(".json")), None)
            if name is None:
                raise SnapshotError(f"{path}: no {SNAPSHOT_FILE} in the archive (is it KAI's /get-snapshot ZIP?)")
            raw = z.read(name)
    except zipfile.BadZipFile as exc:
        raise SnapshotError(f"{path}: not a ZIP archive: {exc}") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: {name} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SnapshotError(f"{path}: {name}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _apply_bind_requests(pods: list[dict], brs: list, path: str) -> int:
    by_key = {}
    for p in pods:
        meta = p.get("metadata") or {}
        by_key[(meta.get("namespace") or "default", meta.get("name"))] = p
    n = 0
    for i, br in enumerate(brs):
        if not isinstance(br, dict):
            raise SnapshotError(f"{path}: rawObjects.bindRequests[{i}]: expected an object")
        spec = br.get("spec") or {}
        phase = (br.get("status") or {}).get("phase") or "Pending"
        node = spec.get("selectedNode")
        if phase == "Failed" or not node:
            continue
        ns = (br.get("metadata") or {}).get("namespace") or "default"
        pod = by_key.get((ns, spec.get("podName")))
        if pod is None or (pod.get("spec") or {}).get("nodeName"):
            continue
        pod["spec"] = dict(pod.get("spec") or {}, nodeName=node)
        groups = [g for g in spec.get("selectedGPUGroups") or [] if g]
        if groups:
            meta = dict(pod.get("metadata") or {})
            labels = dict(meta.get("labels") or {})
            if len(groups) == 1:
                labels[GPU_GROUP_LABEL] = groups[0]
            else:
                labels.update({f"{GPU_GROUP_LABEL}/{g}": g for g in groups})
            meta["labels"] = labels
            pod["metadata"] = meta
        n += 1
    return n


def read_snapshot(path: str) -> Snapshot:
    """Read KAI's snapshot ZIP at ``path``."""
    doc = _read_json(path)
    raw = doc.get("rawObjects")
    if not isinstance(raw, dict):
        raise SnapshotError(f"{path}: {SNAPSHOT_FILE} has no rawObjects (is it KAI's /get-snapshot ZIP?)")
    lists: dict[str, list] = {}
    for key, items in raw.items():
        if items is None:
            continue
        if not isinstance(items, list):
            raise SnapshotError(f"{path}: rawObjects.{key}: expected a list, got {type(items).__name__}")
        lists[key] = [dict(o) if isinstance(o, dict) else o for o in items]
    applied = _apply_bind_requests([p for p in lists.get("pods", []) if isinstance(p, dict)],
                                   lists.pop("bindRequests", []), path)
    objects: list[tuple[str, dict]] = []
    for key, items in lists.items():
        api_version, kind = RAW_KINDS.get(key, ("", ""))
        for i, obj in enumerate(items):
            label = f"rawObjects.{key}[{i}]"
            if isinstance(obj, dict):
                if kind:
                    obj.setdefault("kind", kind)
                    obj.setdefault("apiVersion", api_version)
            objects.append((label, obj))
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise SnapshotError(f"{path}: config: expected an object, got {type(config).__name__}")
    params = doc.get("schedulerParams") or {}
    if not isinstance(params, dict):
        raise SnapshotError(f"{path}: schedulerParams: expected an object, got {type(params).__name__}")
    return Snapshot(objects, config or None, params, applied)


def params_to_config(params: dict, config, where: str) -> list[str]:
    """Apply KAI's scheduler params (the flags it ran with) to a kai SchedulerConfig; returns
    notes on params kai does not model, for the report's warnings."""
    notes: list[str] = []
    if not params:
        return notes
    # Go writes these with omitempty: in a params object (it always names the scheduler) an
    # absent bool is false and an absent count 0, as the scheduler ran with them
    written = bool(params.get("schedulerName"))
    if "maxNumberConsolidationPreemptees" in params or written:
        config.max_consolidation_preemptees = int(params.get("maxNumberConsolidationPreemptees") or 0)
    if "allowConsolidatingReclaim" in params or written:
        config.allow_consolidating_reclaim = bool(params.get("allowConsolidatingReclaim"))
    if "globalDefaultStalenessGracePeriod" in params:
        config.default_staleness_grace_period = float(params["globalDefaultStalenessGracePeriod"]) / 1e9
    if params.get("queueLabelKey"):
        config.queue_label_key = str(params["queueLabelKey"])
    for key, attr in (("restrictSchedulingNodes", "restrict_node_scheduling"),
                      ("fullHierarchyFairness", "full_hierarchy_fairness"),
                      ("useSchedulingSignatures", "use_scheduling_signatures"),
                      ("detailedFitErrors", "detailed_fit_errors")):
        if key in params or written:
            setattr(config, attr, bool(params.get(key)))
    part = params.get("partitionParams") or {}
    pool = part.get("NodePoolLabelValue") or part.get("nodePoolLabelValue") if isinstance(part, dict) else None
    if pool:
        notes.append(f"{where}: schedulerParams.partitionParams selects node pool {pool!r} "
                     f"({part.get('NodePoolLabelKey') or 'kai.scheduler/node-pool'}); kai simulate schedules "
                     f"the whole snapshot")
    return notes


__all__ = ["read_snapshot", "params_to_config", "Snapshot", "SnapshotError", "RAW_KINDS", "SNAPSHOT_FILE"]
