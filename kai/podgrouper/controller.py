"""The live pod-grouper: PodGroups for the pods kai schedules, as KAI's podgrouper controller.

Runs inside the controller process on the shared informers. The controller thread calls
:meth:`PodGrouperController.observe` for every pod event; pods with ``schedulerName`` ours
(except orphans that name their PodGroup) go to a worker thread, which walks the owner
references through the API (:class:`ApiReader`), asks ``kai.podgrouper.hub`` for the
PodGroup metadata, applies it (creates the PodGroup owned by the grouper's owner, or updates
it as KAI's handler does: the queue, the node-pool label and ``markUnschedulable`` /
``schedulingBackoff`` stay as they are) and patches the pod's ``pod-group-name`` annotation
and ``kai.scheduler/subgroup-name`` label. A pod is grouped again when it is bound (an LWS
LeaderReady leader changes its group's minMember) or loses its annotation. A pod that
cannot be grouped gets a ``PodGrouperWarning`` Event and is retried with backoff (1 s to
1 min), as KAI's rate-limited requeue.
"""
from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from typing import Any, Callable

import structlog

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.cache.kubeclient import ApiError, KubeClient
from kai.podgrouper.defaults import GrouperConfig
from kai.podgrouper.hub import podgroup_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, podgroup_body, subgroup_of
from kai.podgrouper.objects import Forbidden
from kai.podgrouper.offline import needs_group

log = structlog.get_logger("kai.podgrouper")

PODGROUPS = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
WARNING_REASON = "PodGrouperWarning"
BACKOFF_BASE, BACKOFF_MAX = 1.0, 60.0
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
# kind -> plural, used when API discovery cannot answer
_PLURALS = {"ReplicaSet": "replicasets", "Deployment": "deployments", "StatefulSet": "statefulsets",
            "DaemonSet": "daemonsets", "Job": "jobs", "CronJob": "cronjobs", "Pod": "pods",
            "ConfigMap": "configmaps", "PriorityClass": "priorityclasses", "PodGroup": "podgroups"}
_CLUSTER_SCOPED = {"PriorityClass"}


class ApiReader:
    """The grouper's Reader over the API server: GETs by apiVersion/kind (plural and scope
    found through API discovery, cached), pod lists by label selector.

    Owners, PriorityClasses and ConfigMaps read within the last ``ttl`` seconds are served from
    memory (the pods of one gang arrive together and share their owners; KAI reads them through
    informer caches, which lag the same way); PodGroups and pods are always read fresh."""

    FRESH_KINDS = frozenset({"PodGroup", "Pod"})

    def __init__(self, client: KubeClient, ttl: float = 2.0, max_entries: int = 4096) -> None:
        self.client = client
        self.ttl = ttl
        self.max_entries = max_entries
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}
        self._cache: dict[tuple[str, str, str, str], tuple[float, dict | None]] = {}
        self._lock = threading.Lock()

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of ``kind`` in ``api_version``."""
        with self._lock:
            known = self._resources.get(api_version)
        if known is None:
            known = {}
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                doc = self.client.get(path)
                for r in doc.get("resources") or []:
                    if "/" not in r.get("name", ""):
                        known[r.get("kind", "")] = (r["name"], bool(r.get("namespaced", True)))
                with self._lock:
                    self._resources[api_version] = known
            except ApiError as exc:      # not served (yet): guess the plural, ask again next time
                log.debug("API discovery failed", api_version=api_version, error=str(exc))
        if kind in known:
            return known[kind]
        return _PLURALS.get(kind) or kind.lower() + "s", kind not in _CLUSTER_SCOPED

    def path(self, api_version: str, kind: str, namespace: str, name: str) -> str:
        plural, namespaced = self._resource(api_version, kind)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        ns = f"/namespaces/{namespace}" if namespaced and namespace else ""
        return f"{prefix}{ns}/{plural}/{name}"

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        if not api_version:
            raise GroupingError(f"{kind} {namespace}/{name}: the owner reference has no apiVersion")
        key = (api_version, kind, namespace, name)
        cacheable = self.ttl > 0 and kind not in self.FRESH_KINDS
        now = time.monotonic()
        if cacheable:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        try:
            obj = self.client.get(self.path(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.status == 403:
                raise Forbidden(str(exc)) from None
            if exc.status != 404:
                raise
            obj = None
        if cacheable:
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
                self._cache[key] = (now, obj)
        return obj

    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return self.client.get(f"/api/v1/namespaces/{namespace}/pods",
                               params={"labelSelector": selector}).get("items") or []


def _pending_key(pod: Pod) -> str:
    """The pod's uid; its namespace/name when it has none (a manifest, not an API object)."""
    m = pod.metadata
    return m.uid or f"{m.namespace}/{m.name}"


def _differs(old: dict, new: dict) -> bool:
    """KAI's podGroupsEqual negated: spec or owners differ, or a new label/annotation is missing."""
    if (old.get("spec") or {}) != (new.get("spec") or {}):
        return True
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    if (om.get("ownerReferences") or []) != (nm.get("ownerReferences") or []):
        return True
    for key in ("labels", "annotations"):
        have = om.get(key) or {}
        if any(have.get(k) != v for k, v in (nm.get(key) or {}).items()):
            return True
    return False


def merge_for_update(old: dict, new: dict, config: GrouperConfig) -> dict:
    """The PodGroup to write over ``old``: ``new``'s spec and owners, labels and annotations
    added, and the fields the grouper never overwrites kept (KAI's ignoreFields)."""
    spec = dict(new.get("spec") or {})
    ospec = old.get("spec") or {}
    for key in ("queue", "markUnschedulable", "schedulingBackoff"):
        if key in ospec:
            spec[key] = ospec[key]
        else:
            spec.pop(key, None)
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    labels = dict(nm.get("labels") or {})
    olabels = om.get("labels") or {}
    for key in (config.node_pool_label_key, config.queue_label_key):
        if key in olabels:
            labels[key] = olabels[key]
        elif key == config.node_pool_label_key:
            labels.pop(key, None)
    out = dict(old)
    meta = dict(om)
    meta["labels"] = {**olabels, **labels}
    meta["annotations"] = {**(om.get("annotations") or {}), **(nm.get("annotations") or {})}
    meta["ownerReferences"] = nm.get("ownerReferences") or []
    out["metadata"], out["spec"] = meta, spec
    return out


class PodGrouperController:
    def __init__(self, client: KubeClient, scheduler_name: str = C.SCHEDULER_NAME,
                 config: GrouperConfig | None = None, status: Any = None,
                 accepts: Callable[[dict[str, str]], bool] | None = None) -> None:
        self.client = client
        # a scheduling shard groups only pods whose PodGroup falls in its partition: ``accepts``
        # sees the PodGroup's labels (kai.cache.scope.Scope.in_partition); the others are left
        # to their shard and remembered in ``foreign`` (pod uids) so nothing reports on them
        self.accepts = accepts
        self.foreign: set[str] = set()
        self.scheduler_name = scheduler_name
        self.config = config or GrouperConfig()
        self.status = status            # kai.cache.status.StatusWriter, for Events (optional)
        self.reader = ApiReader(client)
        self._q: queue.Queue = queue.Queue()
        self._pending: set[str] = set()       # pods queued or being grouped (``_pending_key``)
        self._done: dict[str, tuple] = {}       # pod uid -> signature of the pod state last grouped
        self._retry: list[tuple[float, int, Pod]] = []
        self._seq = itertools.count()
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podgrouper", daemon=True)
        self.created = 0
        self.updated = 0

    def start(self) -> PodGrouperController:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._q.put(None)

    def _signature(self, pod: Pod, name: str | None = None, sub: str | None = None) -> tuple:
        """What, when it changes, makes a grouped pod worth grouping again: its PodGroup
        annotation, SubGroup and node-pool labels, and for an LWS leader whether it is bound (LeaderReady)."""
        m = pod.metadata
        bound = bool(pod.spec.node_name) if m.labels.get(LWS_WORKER_INDEX) == "0" else None
        return (m.uid, bound, name if name is not None else m.annotations.get(C.POD_GROUP_ANNOTATION),
                sub if sub is not None else m.labels.get(C.SUBGROUP_LABEL), m.labels.get(self.config.node_pool_label_key))

    def observe(self, pod: Pod) -> None:
        """Controller thread: queue ``pod`` if it needs (re)grouping."""
        if not needs_group(pod, self.scheduler_name):
            return
        uid = pod.metadata.uid
        if pod.metadata.deletion_timestamp:
            self.forget(uid)
            return
        sig = self._signature(pod)
        # by uid: a pod made again under its name while the old one waits is another pod
        key = _pending_key(pod)
        with self._lock:
            if self._done.get(uid) == sig or key in self._pending:
                return
            self._pending.add(key)
        self._q.put(pod)

    def forget(self, uid: str) -> None:
        with self._lock:
            self.foreign.discard(uid)
            self._done.pop(uid, None)
            self._failures.pop(uid, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = None
            with self._lock:
                if self._retry:
                    timeout = max(0.0, self._retry[0][0] - time.monotonic())
            try:
                pod = self._q.get(timeout=timeout)
            except queue.Empty:
                pod = self._due_retry()
                if pod is None:
                    continue
            if pod is None:
                return
            self._process(pod)

    def _due_retry(self) -> Pod | None:
        with self._lock:
            while self._retry and self._retry[0][0] <= time.monotonic():
                pod = heapq.heappop(self._retry)[2]
                if pod.metadata.uid in self._failures:      # not deleted or grouped meanwhile
                    return pod
        return None

    def _process(self, pod: Pod) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        uid = pod.metadata.uid
        try:
            meta = self.metadata(pod)
            if self.accepts is not None and not self.accepts(meta.labels):
                with self._lock:          # another shard's pod: not ours to group or report on
                    self.foreign.add(uid)
                    self._done[uid] = self._signature(pod)
                    self._failures.pop(uid, None)
                log.debug("pod of another partition left alone", pod=key)
                return
            with self._lock:
                self.foreign.discard(uid)
            meta, sub = self.group(pod, meta)
            with self._lock:
                # the state the pod reaches with our patch: its echo from the watch is a no-op
                self._done[uid] = self._signature(pod, meta.name, sub or pod.metadata.labels.get(C.SUBGROUP_LABEL))
                self._failures.pop(uid, None)
        except Exception as exc:   # noqa: BLE001 - one bad pod must not stop the grouper
            msg = str(exc) if isinstance(exc, (GroupingError, ApiError)) else f"{type(exc).__name__}: {exc}"
            log.warning("grouping failed", pod=key, error=msg)
            with self._lock:     # counted before the Event is visible (readers see both)
                n = self._failures[uid] = self._failures.get(uid, 0) + 1
                delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (n - 1))
                heapq.heappush(self._retry, (time.monotonic() + delay, next(self._seq), pod))
            if self.status is not None and isinstance(exc, GroupingError):
                from kai.cache.status import pod_ref
                self.status.event(pod_ref(pod), WARNING_REASON, msg, "Warning")
        finally:
            with self._lock:
                self._pending.discard(_pending_key(pod))

    # ------------------------------------------------------------------ one pod
    def metadata(self, pod: Pod) -> PodGroupMetadata:
        meta = podgroup_metadata(pod, self.reader, self.config)
        pool_key = self.config.node_pool_label_key
        if pool_key and pool_key not in meta.labels and pool_key in pod.metadata.labels:
            meta.labels[pool_key] = pod.metadata.labels[pool_key]
        return meta

    def group(self, pod: Pod, meta: PodGroupMetadata | None = None) -> tuple[PodGroupMetadata, str]:
        """Apply the pod's PodGroup and assign the pod to it; returns (metadata, SubGroup)."""
        meta = meta if meta is not None else self.metadata(pod)
        self.apply(meta)
        return meta, self.assign(pod, meta)

    def apply(self, meta: PodGroupMetadata) -> None:
        body = podgroup_body(meta)
        path = PODGROUPS.format(ns=meta.namespace)
        for _ in range(5):
            try:
                old = self.client.get(f"{path}/{meta.name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                try:
                    self.client.post(path, body)
                    self.created += 1
                    log.info("created podgroup", podgroup=f"{meta.namespace}/{meta.name}",
                             owner=f"{meta.owner.kind}/{meta.owner.name}", min_member=meta.min_available)
                    return
                except ApiError as exc2:
                    if exc2.status == 409:
                        continue
                    raise
            merged = merge_for_update(old, body, self.config)
            if not _differs(old, merged):
                return
            try:
                self.client.put(f"{path}/{meta.name}", merged)
                self.updated += 1
                log.info("updated podgroup", podgroup=f"{meta.namespace}/{meta.name}", min_member=meta.min_available)
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
        raise GroupingError(f"PodGroup {meta.namespace}/{meta.name}: conflicting updates, retrying later")

    def assign(self, pod: Pod, meta: PodGroupMetadata) -> str:
        """Annotate (and label) the pod for ``meta``; returns the pod's SubGroup ("" if none)."""
        m = pod.metadata
        sub = subgroup_of(meta, m.namespace or "default", m.name)
        if m.annotations.get(C.POD_GROUP_ANNOTATION) == meta.name and (m.labels.get(C.SUBGROUP_LABEL, "") == sub
                                                                       or not sub):
            return sub
        patch: dict[str, Any] = {"metadata": {"annotations": {C.POD_GROUP_ANNOTATION: meta.name}}}
        if m.uid:
            # a precondition: never annotate another pod that took this one's name since
            patch["metadata"]["uid"] = m.uid
        if sub:
            patch["metadata"]["labels"] = {C.SUBGROUP_LABEL: sub}
        self.client.patch(f"/api/v1/namespaces/{m.namespace}/pods/{m.name}", patch)
        return sub
