"""The live pod-grouper: PodGroups for kai-scheduler pods that do not name one.

Runs inside the controller process on the shared informers. The controller thread calls
:meth:`PodGrouperController.observe` for every pod event; pods with ``schedulerName`` ours
and no ``pod-group-name`` annotation go to a worker thread, which walks ownerReferences up
through the API (GET each owner), asks :func:`kai.podgrouper.grouper.group_for_pod` for
the PodGroup (``pg-<owner>-<ownerUID>``, KAI's defaults and minMember), creates it if missing
(owned by the top owner, so garbage collection removes it) and annotates the pod. The pod
update then comes back through the watch and the scheduler sees the pod in its group.
"""
from __future__ import annotations

import queue
import threading
from typing import Any

import msgspec
import structlog

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.cache.kubeclient import ApiError, KubeClient
from kai.podgrouper.grouper import group_for_pod, top_owner

log = structlog.get_logger("kai.podgrouper")

# kind -> plural, for owners whose apiVersion is known from the ownerReference
_PLURALS = {
    "ReplicaSet": "replicasets", "Deployment": "deployments", "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets", "Job": "jobs", "CronJob": "cronjobs", "JobSet": "jobsets",
    "LeaderWorkerSet": "leaderworkersets", "PyTorchJob": "pytorchjobs", "TFJob": "tfjobs",
    "MPIJob": "mpijobs", "XGBoostJob": "xgboostjobs", "JAXJob": "jaxjobs", "Notebook": "notebooks",
    "RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices", "Workflow": "workflows",
}


def owner_path(api_version: str, kind: str, ns: str, name: str) -> str:
    plural = _PLURALS.get(kind) or (kind.lower() + "s")
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{ns}/{plural}/{name}"


class PodGrouperController:
    def __init__(self, client: KubeClient, scheduler_name: str = C.SCHEDULER_NAME) -> None:
        self.client = client
        self.scheduler_name = scheduler_name
        self._q: queue.Queue = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podgrouper", daemon=True)
        self.created = 0

    def start(self) -> PodGrouperController:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._q.put(None)

    def observe(self, pod: Pod) -> None:
        """Controller thread: queue ``pod`` if it needs a PodGroup."""
        if (pod.spec.scheduler_name != self.scheduler_name or C.POD_GROUP_ANNOTATION in pod.metadata.annotations
                or pod.metadata.deletion_timestamp or pod.spec.node_name):
            return
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._q.put(pod)

    def _run(self) -> None:
        while not self._stop.is_set():
            pod = self._q.get()
            if pod is None:
                return
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            try:
                self.group(pod)
            except Exception as exc:   # noqa: BLE001 - one bad pod must not stop the grouper
                log.warning("grouping failed", pod=key, error=str(exc))
            finally:
                with self._lock:
                    self._pending.discard(key)

    def _owners(self, pod: Pod) -> dict[tuple[str, str, str], dict[str, Any]]:
        owners: dict[tuple[str, str, str], dict[str, Any]] = {}
        ns = pod.metadata.namespace
        refs = pod.metadata.owner_references
        seen = 0
        while refs and seen < 16:
            seen += 1
            ref = next((r for r in refs if r.controller), refs[0])
            try:
                obj = self.client.get(owner_path(ref.api_version, ref.kind, ns, ref.name))
            except ApiError as exc:
                log.debug("owner not readable", kind=ref.kind, name=ref.name, error=str(exc))
                break
            owners[(ref.kind, ns, ref.name)] = obj
            refs = [msgspec.convert(r, type=type(ref)) for r in obj.get("metadata", {}).get("ownerReferences") or []]
        return owners

    def group(self, pod: Pod) -> str | None:
        """Create the pod's PodGroup if missing and annotate the pod; returns the PodGroup name."""
        ns = pod.metadata.namespace or "default"
        owners = self._owners(pod)
        pg = group_for_pod(pod, owners)
        if pg is None:
            return None
        kind, oname, ouid, obj = top_owner(pod, owners)
        body = msgspec.to_builtins(pg)
        body["apiVersion"], body["kind"] = "scheduling.run.ai/v2alpha2", "PodGroup"
        meta = body.setdefault("metadata", {})
        meta.pop("uid", None)
        meta.pop("creationTimestamp", None)
        body.setdefault("spec", {})["minMember"] = pg.spec.min_member
        api_version = (obj or {}).get("apiVersion") or ("v1" if kind == "Pod" else "")
        if not api_version:
            for r in pod.metadata.owner_references:
                if r.kind == kind and r.name == oname:
                    api_version = r.api_version
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") and r.get("apiVersion")]
        if refs:
            meta["ownerReferences"] = refs     # the grouper's choice (pod, Job under a CronJob, ...)
        elif ouid and api_version:
            meta["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": oname, "uid": ouid}]
        else:
            meta.pop("ownerReferences", None)
        name = meta["name"]
        try:
            self.client.post(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups", body)
            self.created += 1
            log.info("created podgroup", podgroup=f"{ns}/{name}", owner=f"{kind}/{oname}")
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.client.patch(f"/api/v1/namespaces/{ns}/pods/{pod.metadata.name}",
                          {"metadata": {"annotations": {C.POD_GROUP_ANNOTATION: name}}})
        return name
