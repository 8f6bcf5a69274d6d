"""GPU reservation pods and device visibility for shared (fraction) GPUs, as KAI's binder does.

For every GPU group a fraction pod is bound into, the binder (a worker thread, never the
scheduling cycle) calls :meth:`ReservationService.reserve`:

1. find the group's reservation pod in namespace ``kai-resource-reservation`` (label
   ``runai-gpu-group=<group>``), or create one: ``gpu-reservation-<node>-<rand5>``, labels
   ``app=kai-resource-reservation`` and ``runai-gpu-group=<group>``, ``spec.nodeName=<node>``
   (it bypasses scheduling), requesting 1 ``nvidia.com/gpu`` (cpu 1m / memory 10Mi, limits
   50m / 100Mi, as KAI) and annotated ``karpenter.sh/do-not-disrupt: "true"``. The namespace is
   created when missing. A lock per group makes concurrent binds into one group share one pod.
2. wait (bounded, ``timeout`` seconds, polling the pod) for its annotation
   ``run.ai/reserve_for_gpu_index``: the GPU UUID. On a real node KAI's resource-reservation
   image writes it after reading its one visible GPU through NVML. **Nothing writes it on kwok
   nodes**: the tests patch the annotation themselves, playing the device's role.

   On timeout kai **still binds** (KAI instead deletes the reservation pod and fails the
   bind): the fraction pod is bound with ``NVIDIA_VISIBLE_DEVICES`` empty in its ConfigMap, a
   warning is logged and a ``GPUReservationTimeout`` Warning Event recorded on the pod; the
   reservation pod is kept (it still holds the device), and the group is remembered as timed
   out so its later pods do not wait again (they pick the UUID up if it arrived meanwhile).
   Rationale: a scheduling decision is never lost to a slow image pull, and clusters without
   the reservation image (kwok, fake GPU nodes) keep working; on a real cluster a missing
   UUID shows up as the Event.

:meth:`write_visibility` then writes the pod's device ConfigMap before binding: the name
follows KAI's admission webhook, ``<prefix>-0`` where ``<prefix>`` is the pod's
``runai/shared-gpu-configmap`` annotation (``<owner or pod name>-<rand7>-shared-gpu``,
generated and annotated by the binder when no webhook set it), holding
``NVIDIA_VISIBLE_DEVICES=<uuid[,uuid]>`` and ``GPU_PORTION=<portion per device>``, owned by the
pod (garbage-collected with it). KAI's second, ``envFrom`` ConfigMap (``<prefix>-0-evar``) is
not written: without KAI's admission webhook nothing references it.

:meth:`stale` names reservation pods whose group no longer has a live fraction pod (the
controller deletes them after each cycle, given the groups still in use; KAI's binder sync).
kai also annotates the pods it creates with its scheduler name (``kai.scheduler/reserved-by``):
two kai schedulers sharing nodes under different scheduler names each judge only their own
pods (a pod without the annotation, from an older kai, is judged by any).
Reservation pods themselves are not charged by the scheduler: a group's GPU is charged through
its fraction pods (see ``kai.controller.main``).
"""
from __future__ import annotations

import random
import string
import threading
import time
from typing import Any, Iterable

import structlog

from kai.cache.kubeclient import ApiError, KubeClient

log = structlog.get_logger("kai.reservation")

NAMESPACE = "kai-resource-reservation"
APP_LABEL = "app"
APP_LABEL_VALUE = "kai-resource-reservation"
GPU_GROUP_LABEL = "runai-gpu-group"
GPU_INDEX_ANNOTATION = "run.ai/reserve_for_gpu_index"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
#: the scheduler name that created a reservation pod (kai's own annotation): two kai schedulers
#: sharing nodes (different ``--scheduler-name``) each clean up only their own pods
OWNER_ANNOTATION = "kai.scheduler/reserved-by"
CONFIGMAP_ANNOTATION = "runai/shared-gpu-configmap"
POD_PREFIX = "gpu-reservation"
DEFAULT_IMAGE = "ghcr.io/nvidia/kai-scheduler/resource-reservation:latest"
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
GPU_PORTION = "GPU_PORTION"


def _rand(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def is_reservation_pod(pod: Any, namespace: str = NAMESPACE) -> bool:
    m = pod.metadata
    return m.namespace == namespace and (m.labels or {}).get(APP_LABEL) == APP_LABEL_VALUE


def configmap_prefix(pod_name: str, owner_name: str = "") -> str:
    """KAI's ``<base>-<rand7>-shared-gpu`` (base cut so ``<prefix>-0-evar-vol`` fits 63 chars)."""
    base = owner_name or pod_name
    limit = 63 - 13 - len("shared-gpu") - 2 - 5
    return f"{base[:limit]}-{_rand(7)}-shared-gpu"


class ReservationTimeout(Exception):
    pass


class ReservationService:
    """Reservation pods and device ConfigMaps (see module docstring). Thread-safe."""

    def __init__(self, client: KubeClient, namespace: str = NAMESPACE, timeout: float = 15.0,
                 image: str = DEFAULT_IMAGE, service_account: str = "", poll: float = 0.2,
                 owner: str = "") -> None:
        self.client = client
        #: this scheduler's name: written on the pods it creates (``OWNER_ANNOTATION``); the sync
        #: leaves pods another scheduler created alone
        self.owner = owner
        self.namespace = namespace
        self.timeout = timeout
        self.image = image
        self.service_account = service_account
        self.poll = poll
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._ns_ready = False
        self.timed_out: set[str] = set()          # groups whose wait timed out once
        self.deleting: dict[str, float] = {}      # reservation pod name -> when DELETE was issued
        self.created = 0

    # ------------------------------------------------------------------ reserve (binder workers)
    def _lock(self, group: str) -> threading.Lock:
        with self._locks_guard:
            lk = self._locks.get(group)
            if lk is None:
                lk = self._locks[group] = threading.Lock()
            return lk

    def _pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods"

    def find(self, group: str) -> list[dict]:
        got = self.client.get(self._pods_path(), params={
            "labelSelector": f"{APP_LABEL}={APP_LABEL_VALUE},{GPU_GROUP_LABEL}={group}"})
        return [p for p in got.get("items") or [] if not p["metadata"].get("deletionTimestamp")]

    def reserve(self, node: str, group: str) -> str:
        """The GPU UUID of ``group`` on ``node``; '' when the wait timed out (see module doc).
        API errors other than the timeout propagate (the bind fails)."""
        with self._lock(group):
            pods = self.find(group)
            pod = next((p for p in pods if p["spec"].get("nodeName") == node), None)
            if pod is None:
                if pods:
                    log.warning("reservation pod of the GPU group is on another node", group=group,
                                node=node, other=pods[0]["spec"].get("nodeName"))
                pod = self._create(node, group)
            name = pod["metadata"]["name"]
            uuid = (pod["metadata"].get("annotations") or {}).get(GPU_INDEX_ANNOTATION, "")
            if uuid or group in self.timed_out:
                return uuid
            uuid = self._wait(name)
            if not uuid:
                self.timed_out.add(group)
                log.warning("timed out waiting for the GPU reservation pod's device; binding anyway",
                            pod=f"{self.namespace}/{name}", group=group, node=node, timeout=self.timeout)
            return uuid

    def _wait(self, name: str) -> str:
        deadline = time.monotonic() + self.timeout
        path = f"{self._pods_path()}/{name}"
        while True:
            try:
                pod = self.client.get(path)
                uuid = (pod["metadata"].get("annotations") or {}).get(GPU_INDEX_ANNOTATION, "")
                if uuid:
                    return uuid
            except ApiError as exc:
                if exc.status == 404:
                    raise
            if time.monotonic() >= deadline:
                return ""
            time.sleep(self.poll)

    def ensure_namespace(self) -> None:
        if self._ns_ready:
            return
        try:
            self.client.get(f"/api/v1/namespaces/{self.namespace}")
        except ApiError as exc:
            if exc.status == 403:       # no RBAC on namespaces: the chart creates it; the pod create will tell
                self._ns_ready = True
                return
            if exc.status != 404:
                raise
            try:
                self.client.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": self.namespace}})
            except ApiError as exc2:
                if exc2.status != 409:
                    raise
        self._ns_ready = True

    def manifest(self, node: str, group: str) -> dict:
        res = {"requests": {"nvidia.com/gpu": "1", "cpu": "1m", "memory": "10Mi"},
               "limits": {"nvidia.com/gpu": "1", "cpu": "50m", "memory": "100Mi"}}
        env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
               {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
        spec: dict[str, Any] = {"nodeName": node, "terminationGracePeriodSeconds": 0,
                                "tolerations": [{"operator": "Exists"}],
                                "containers": [{"name": "resource-reservation", "image": self.image,
                                                "imagePullPolicy": "IfNotPresent", "resources": res, "env": env}]}
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{POD_PREFIX}-{node}-{_rand(5)}"[:253], "namespace": self.namespace,
                             "labels": {APP_LABEL: APP_LABEL_VALUE, GPU_GROUP_LABEL: group},
                             "annotations": {DO_NOT_DISRUPT: "true",
                                             **({OWNER_ANNOTATION: self.owner} if self.owner else {})}},
                "spec": spec}

    def _create(self, node: str, group: str) -> dict:
        self.ensure_namespace()
        delay = 0.2
        for attempt in range(6):
            try:
                pod = self.client.post(self._pods_path(), self.manifest(node, group))
                self.created += 1
                log.info("created GPU reservation pod", pod=f"{self.namespace}/{pod['metadata']['name']}",
                         group=group, node=node)
                return pod
            except ApiError as exc:
                # a fresh namespace has no "default" ServiceAccount for a moment
                transient = exc.retryable or (exc.status == 403 and "serviceaccount" in exc.message.lower())
                if exc.status == 404 and "namespace" in exc.message.lower():
                    self._ns_ready = False
                    self.ensure_namespace()
                    transient = True
                if not transient or attempt == 5:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ device ConfigMap
    def write_visibility(self, ns: str, pod_name: str, pod_uid: str, prefix: str, uuids: list[str],
                         portion: float, suffix: str = "0") -> str:
        """Create or update the pod's ConfigMap ``<prefix>-<suffix>`` (the GPU container's index,
        ``i<n>`` for an init container: where the admission webhook points its env); returns its name."""
        name = f"{prefix}-{suffix}"
        data = {VISIBLE_DEVICES: ",".join(u for u in uuids if u), GPU_PORTION: f"{portion:g}"}
        self._upsert_cm(ns, name, pod_name, pod_uid, data)
        return name

    def _upsert_cm(self, ns: str, name: str, pod_name: str, pod_uid: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                                  "uid": pod_uid}]},
                "data": data}
        try:
            self.client.post(f"/api/v1/namespaces/{ns}/configmaps", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            self.client.patch(f"/api/v1/namespaces/{ns}/configmaps/{name}",
                              {"metadata": {"ownerReferences": body["metadata"]["ownerReferences"]}, "data": data})

    def delete_configmaps(self, ns: str, prefix: str, suffix: str = "0") -> None:
        """Rollback of a failed bind (KAI's gpusharing Rollback)."""
        for name in (f"{prefix}-{suffix}", f"{prefix}-{suffix}-evar"):
            try:
                self.client.delete(f"/api/v1/namespaces/{ns}/configmaps/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    log.debug("configmap rollback failed", configmap=f"{ns}/{name}", error=str(exc))

    # ------------------------------------------------------------------ sync (controller thread decides)
    def stale(self, reservation_pods: Iterable[Any], live_groups: set[str], grace: float = 30.0) -> list[str]:
        """Names of reservation pods whose group has no live fraction pod (not already being
        deleted; a DELETE issued more than ``grace`` seconds ago is issued again). A pod another
        scheduler created (``OWNER_ANNOTATION`` naming another scheduler) is never one: its
        group's fraction pods are that scheduler's, not in ``live_groups``."""
        now = time.monotonic()
        out = []
        for p in reservation_pods:
            m = p.metadata
            if m.deletion_timestamp:
                continue
            owner = (m.annotations or {}).get(OWNER_ANNOTATION)
            if owner and owner != self.owner:
                continue
            group = (m.labels or {}).get(GPU_GROUP_LABEL, "")
            if group in live_groups:
                continue
            # a group being reserved right now (its lock held) is live: its bind is in flight
            lk = self._locks.get(group)
            if lk is not None and lk.locked():
                continue
            t = self.deleting.get(m.name)
            if t is not None and now - t < grace:
                continue
            self.deleting[m.name] = now
            out.append(m.name)
        return out

    def delete(self, name: str) -> None:
        try:
            self.client.delete(f"{self._pods_path()}/{name}",
                               {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
            log.info("deleted GPU reservation pod (its group has no fraction pods left)",
                     pod=f"{self.namespace}/{name}")
        except ApiError as exc:
            if exc.status != 404:
                self.deleting.pop(name, None)
                raise

    def forget(self, name: str, group: str = "") -> None:
        """The informer saw the reservation pod go."""
        self.deleting.pop(name, None)
        if group:
            self.timed_out.discard(group)
