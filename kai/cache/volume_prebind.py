"""VolumeBinding's PreBind for one pod: carry out what its placement decided for its claims, then
wait until every claim is bound.

Called by the binder's worker threads (``kai.cache.binder``) before a pod is bound, with the
pod's ``volume_plan`` (:class:`kai.api.storage.ClaimPlan`), as kube-scheduler's BindPodVolumes
does (bindAPIUpdate, then checkBindings until bound):

- a static binding sets the PV's ``spec.claimRef`` to the claim (and ``pv.kubernetes.io/
  bound-by-controller``); the PV controller then binds the claim to it;
- a dynamic provisioning sets the claim's ``volume.kubernetes.io/selected-node``; the class's
  provisioner creates a PV there and the PV controller binds it;
- then it polls the claims (and the pod) until all are bound, for at most ``timeout`` seconds.
  A reset claimRef, a removed or changed selected-node (the provisioner gave up), a PV whose node
  affinity excludes the node, or the pod being deleted end the wait at once.

A failure leaves nothing half done: the writes this attempt made are undone wherever the PV
controller has not bound the claim yet (the claimRef cleared, the selected-node removed), every
change is made against the object's resourceVersion, and the caller does not bind the pod.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import msgspec

from kai.api.storage import (ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, ClaimPlan, PersistentVolume,
                             PersistentVolumeClaim, is_fully_bound)
from kai.cache.kubeclient import ApiError, KubeClient
from kai.dra.inventory import node_selector_mask


class VolumeBindError(Exception):
    """The volumes of a pod could not be bound; the message says why."""


def _claim_path(p: ClaimPlan) -> str:
    return f"/api/v1/namespaces/{p.namespace}/persistentvolumeclaims/{p.name}"


def _pv_path(name: str) -> str:
    return f"/api/v1/persistentvolumes/{name}"


def node_affinity_matches(pv: PersistentVolume, labels: dict[str, str]) -> bool:
    """volume.CheckNodeAffinity: the PV's required terms against a node known by its labels only."""
    na = pv.spec.node_affinity
    if na is None or na.required is None:
        return True
    return bool(node_selector_mask(na.required, [""], [labels])[0])


def _claim(client: KubeClient, p: ClaimPlan) -> PersistentVolumeClaim:
    pvc = msgspec.convert(client.get(_claim_path(p)), PersistentVolumeClaim)
    if p.uid and pvc.metadata.uid != p.uid:
        raise VolumeBindError(f"persistentvolumeclaim {p.key} was replaced")
    return pvc


def _bind_volume(client: KubeClient, p: ClaimPlan, attempts: int = 3) -> bool:
    """Set the PV's claimRef to the claim; False when there was nothing to write."""
    for attempt in range(attempts):
        pvc = _claim(client, p)
        if pvc.spec.volume_name == p.volume and is_fully_bound(pvc):
            return False
        pv = client.get(_pv_path(p.volume))
        meta, spec = pv.setdefault("metadata", {}), pv.setdefault("spec", {})
        if meta.get("deletionTimestamp"):
            raise VolumeBindError(f'persistentvolume "{p.volume}" is being deleted')
        ref = spec.get("claimRef")
        ours = ref is not None and ref.get("name") == p.name and (ref.get("namespace") or "default") == p.namespace
        if ref is not None and not ours:
            raise VolumeBindError(f'persistentvolume "{p.volume}" is already bound to claim '
                                  f'{ref.get("namespace")}/{ref.get("name")}')
        if ours and ref.get("uid") and ref["uid"] != pvc.metadata.uid:
            raise VolumeBindError(f'persistentvolume "{p.volume}" is bound to an earlier claim {p.key}')
        if ours and ref.get("uid") == pvc.metadata.uid:
            return False
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": p.namespace,
                            "name": p.name, "uid": pvc.metadata.uid,
                            "resourceVersion": pvc.metadata.resource_version}
        if ref is None:
            meta.setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
        try:
            client.put(_pv_path(p.volume), pv)          # carries the PV's resourceVersion: no lost update
            return True
        except ApiError as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
    return False


def _select_node(client: KubeClient, p: ClaimPlan, node: str, attempts: int = 3) -> bool:
    """Set the claim's selected-node; False when there was nothing to write."""
    for attempt in range(attempts):
        pvc = _claim(client, p)
        if pvc.spec.volume_name:
            return False                                # bound already; the wait checks where
        cur = pvc.metadata.annotations.get(ANN_SELECTED_NODE)
        if cur == node:
            return False
        if cur:
            raise VolumeBindError(f"persistentvolumeclaim {p.key} is being provisioned on node {cur}")
        try:
            client.patch(_claim_path(p), {"metadata": {"annotations": {ANN_SELECTED_NODE: node},
                                                       "resourceVersion": pvc.metadata.resource_version}})
            return True
        except ApiError as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
    return False


def _undo(client: KubeClient, written: list[ClaimPlan], node: str) -> list[str]:
    """Take back this attempt's writes where the claim is not bound yet; best effort, returns
    what could not be undone (for the log)."""
    left = []
    for p in reversed(written):
        try:
            _undo_one(client, p, node)
        except (ApiError, VolumeBindError) as exc:
            left.append(f"{p.key}: {exc}")
    return left


def _undo_one(client: KubeClient, p: ClaimPlan, node: str, attempts: int = 3) -> None:
    """Take back one claim's write; a conflict (the PV controller or a provisioner updated
    the object meanwhile, e.g. with its storage-provisioner annotations) reads it again."""
    for attempt in range(attempts):
        pvc = _claim(client, p)
        if pvc.spec.volume_name:
            return                                      # the PV controller acted: leave it bound
        try:
            if p.volume:
                pv = client.get(_pv_path(p.volume))
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref.get("uid") != pvc.metadata.uid:
                    return
                pv["spec"].pop("claimRef", None)
                (pv["metadata"].get("annotations") or {}).pop(ANN_BOUND_BY_CONTROLLER, None)
                client.put(_pv_path(p.volume), pv)
            elif pvc.metadata.annotations.get(ANN_SELECTED_NODE) == node:
                client.patch(_claim_path(p), {"metadata": {"annotations": {ANN_SELECTED_NODE: None},
                                                           "resourceVersion": pvc.metadata.resource_version}})
            return
        except ApiError as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise


def _check(client: KubeClient, ns: str, pod: str, uid: str, node: str, plans: Sequence[ClaimPlan],
           labels: dict[str, str]) -> bool:
    """One round of checkBindings: True when every claim is bound; raises when one never will be."""
    try:
        got = client.get(f"/api/v1/namespaces/{ns}/pods/{pod}")
    except ApiError as exc:
        if exc.status == 404:
            raise VolumeBindError("pod does not exist any more") from None
        raise
    if (got.get("metadata") or {}).get("uid") != uid:
        raise VolumeBindError("pod was replaced")
    done = True
    for p in plans:
        pvc = _claim(client, p)
        name = pvc.spec.volume_name
        if p.volume:
            pv = msgspec.convert(client.get(_pv_path(p.volume)), PersistentVolume)
            ref = pv.spec.claim_ref
            if ref is None or not ref.uid:
                raise VolumeBindError(f'ClaimRef got reset for pv "{p.volume}"')
        elif name:
            try:
                pv = msgspec.convert(client.get(_pv_path(name)), PersistentVolume)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                done = False
                continue
        else:
            if pvc.metadata.annotations.get(ANN_SELECTED_NODE) != node:
                raise VolumeBindError(f'provisioning failed for PVC "{p.name}"')
            done = False
            continue
        if not node_affinity_matches(pv, labels):
            raise VolumeBindError(f'pv "{pv.metadata.name}" node affinity doesn\'t match node "{node}"')
        if not is_fully_bound(pvc):
            done = False
    return done


def bind_pod_volumes(client: KubeClient, ns: str, pod: str, uid: str, node: str, plans: Sequence[ClaimPlan],
                     timeout: float, poll: float = 0.2, sleep: Any = time.sleep) -> None:
    """Carry out ``plans`` for pod ``ns/pod`` on ``node`` and wait until its claims are bound.
    Raises VolumeBindError (or ApiError) after undoing its own writes."""
    written: list[ClaimPlan] = []
    try:
        for p in plans:
            if p.volume and _bind_volume(client, p):
                written.append(p)
            elif not p.volume and _select_node(client, p, node):
                written.append(p)
        labels = (client.get(f"/api/v1/nodes/{node}").get("metadata") or {}).get("labels") or {}
        labels.setdefault("kubernetes.io/hostname", node)
        deadline = time.monotonic() + timeout
        delay = poll
        while not _check(client, ns, pod, uid, node, plans, labels):
            if time.monotonic() > deadline:
                raise VolumeBindError(f"timed out after {timeout:g}s waiting for the claims to be bound")
            sleep(delay)
            delay = min(delay * 1.5, 1.0)
    except (ApiError, VolumeBindError):
        _undo(client, written, node)
        raise
