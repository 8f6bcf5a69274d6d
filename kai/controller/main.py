"""``kai scheduler``: the live controller process.

One process, one shared informer cache: informers (``kai.cache.watch``) feed one event queue;
this module's :class:`Controller` is the single writer of the ClusterState. Every
``--schedule-period`` it drains the queue into the state, and, when it holds the leader Lease
(``kai.controller.leader``), runs ``Scheduler.run_cycle`` committing into
``kai.cache.binder.LiveCache``. Followers keep their cache warm and schedule nothing. The
pod-grouper (``kai.podgrouper.controller``) and status writer (``kai.cache.status``) run on
worker threads of the same process; metrics and health are served by
``kai.controller.metrics``. SIGTERM/SIGINT stop cleanly: the cycle loop ends, in-flight
bindings finish, the Lease is released.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
import uuid
from typing import Any, Callable

import structlog

import kai
from kai.api import constants as C
from kai.cache.binder import Binder, LiveCache
from kai.cache.cluster_state import ClusterState
from kai.cache.dra_store import DraStore
from kai.cache.kubeclient import ApiError, KubeClient, KubeconfigError, rate_limiter
from kai.cache.reservation import GPU_GROUP_LABEL, ReservationService, is_reservation_pod
from kai.cache.scope import Scope
from kai.cache.status import StatusReporter, StatusWriter
from kai.cache.storage_store import StorageStore
from kai.cache.usage_db import UsageLister, build_usage_lister
from kai.cache.watch import ADDED, DELETED, INVALID, NODE_PODS, RESOURCES, SYNCED, Informer, start_informers
from kai.controller.leader import LeaderElector
from kai.controller.metrics import HealthServer, Metrics
from kai.controller.profiler import CycleProfiler, ProfilerServer
from kai.podgrouper.controller import PodGrouperController
from kai.plugins import unimplemented as unimplemented_plugins
from kai.scheduler import Scheduler

log = structlog.get_logger("kai.controller")


def _key(obj: Any) -> str:
    m = obj.metadata
    return f"{m.namespace}/{m.name}" if m.namespace else m.name


class Controller:
    """Informers -> ClusterState -> Scheduler -> Binder, one writer thread."""

    def __init__(self, client: KubeClient, config, scheduler_name: str = C.SCHEDULER_NAME,
                 metrics: Metrics | None = None, bind_workers: int = 16, status_workers: int = 2,
                 group_pods: bool = True, fence: Callable[[], bool] | None = None,
                 volume_bind_timeout: float = 120.0, scope: Scope | None = None) -> None:
        self.client = client
        # the shard (partition) and monitoring scope of this process (kai.cache.scope)
        self.scope = scope or Scope()
        # may this replica write? (the leader Lease held with margin; kai.controller.leader)
        self.fence: Callable[[], bool] = fence or (lambda: True)
        self._leading = False
        self._regrouped = float("-inf")
        self.scheduler_name = scheduler_name
        self.events: queue.Queue = queue.Queue()
        self.state = ClusterState(scheduler_name=scheduler_name)
        self.dra = DraStore()        # ResourceSlices, DeviceClasses, ResourceClaims, templates
        self.state.dra = self.dra    # sessions allocate devices from it (kai.plugins.dynamicresources)
        self.metrics = metrics or Metrics()
        self.status = StatusWriter(client, workers=status_workers)
        self.reporter = StatusReporter(self.status)
        self.informers: dict[str, Informer] = {}
        self._maybe_gone: dict[str, tuple[str, float]] = {}    # pod uid -> (key, when): see _apply_pod_deleted
        self._ns_selected: dict[str, bool] = {}                  # namespace -> in --namespace-label-selector
        # GPU reservation pods (kai.cache.reservation): KAI_GPU_RESERVATION_TIMEOUT bounds the wait
        # for a reservation pod's GPU UUID, KAI_RESERVATION_IMAGE / KAI_RESERVATION_SERVICE_ACCOUNT
        # configure the pod
        self.reservations = ReservationService(
            client, timeout=float(os.environ.get("KAI_GPU_RESERVATION_TIMEOUT", "15")), owner=scheduler_name,
            **{k: v for k, v in (("image", os.environ.get("KAI_RESERVATION_IMAGE")),
                                 ("service_account", os.environ.get("KAI_RESERVATION_SERVICE_ACCOUNT")))
               if v})
        self.reservation_pods: dict[str, Any] = {}     # name -> Pod; not charged (their group's pods are)
        self.binder = Binder(client, self.events, workers=bind_workers, latest_pod=self._latest_pod,
                             status=self.status, scheduler_name=scheduler_name,
                             on_bound=lambda s: self.metrics.task_bind.observe(s * 1000.0),
                             reservations=self.reservations, volume_bind_timeout=volume_bind_timeout)
        self.grouper = PodGrouperController(client, scheduler_name, config=getattr(config, "grouper", None),
                                            status=self.status,
                                            accepts=self.scope.in_partition) if group_pods else None
        self.scheduler = Scheduler(self.state, config)
        self._warmed = (-1, float("-inf"))      # (state change number, monotonic time) of the last warm
        self.usage: UsageLister | None = None      # time-based fair share (kai.cache.usage_db)
        self.synced = False
        self.invalid: dict[str, dict[str, str]] = {}       # kind -> object key -> why it is ignored
        self.guard_failures = 0                            # objects whose apply raised
        self._problem_seen: dict[str, float] = {}
        self.cycles = 0
        self.last_result = None

    def _latest_pod(self, key: str):
        for kind in ("Pod", "NodePod"):
            inf = self.informers.get(kind)
            pod = inf.store.get(key) if inf is not None else None
            if pod is not None:
                return pod
        return None

    def debug_state(self) -> dict:
        """What the cache believes (read from another thread: retried if a dict changes meanwhile)."""
        st = self.state
        for _ in range(10):
            try:
                return {"cycles": self.cycles, "nodes": sorted(st.nodes.by_name),
                        "pods": {p.key: p.node_name for p in list(st.pods.values())
                                 if p.pod.spec.scheduler_name == self.scheduler_name},
                        "podgroups": sorted(st.podgroups), "queues": sorted(st.queues),
                        "nodePool": self.scope.node_pool,
                        "failedBinds": dict(self.binder.failed_binds),
                        "invalid": {k: dict(v) for k, v in self.invalid.items() if v}}
            except RuntimeError:
                time.sleep(0.01)
        return {}

    # ------------------------------------------------------------------ startup
    def start(self) -> Controller:
        params = self.scope.informer_params(self.scheduler_name)
        if not self.scope.selective:
            self.informers = start_informers(self.client, self.events, params=params)
        else:
            self._start_selective(params)
        if self.usage is not None:
            self.usage.start()
        if self.grouper is not None:
            self.grouper.start()
        return self

    def _start_selective(self, params: dict) -> None:
        """Selective monitoring (kai.cache.scope): our unbound pods narrowed by the server
        (schedulerName, nodeName, --pod-label-selector) and, against the namespaces' labels,
        by the informer; PodGroups narrowed to the selected namespaces; every bound pod
        watched apart ("NodePod"), since it uses node capacity whoever owns it."""
        keep = None
        if not self.scope.namespaces.everything:
            ns = start_informers(self.client, self.events, kinds=("Namespace",))["Namespace"]
            ns.synced.wait(60)          # the namespaces' labels first: pods are judged by them
            self.informers["Namespace"] = ns
            for name, obj in list(ns.store.items()):
                self._ns_selected[name] = self.scope.namespaces.matches(obj.metadata.labels)

            def keep(obj) -> bool:
                return self._ns_selected.get(obj.metadata.namespace, False)
        for kind, res in RESOURCES.items():
            if kind not in self.informers:
                self.informers[kind] = Informer(self.client, res, self.events, params=params.get(kind),
                                                keep=keep if kind in ("Pod", "PodGroup") else None).start()
        self.informers["NodePod"] = Informer(self.client, NODE_PODS, self.events, params=params["NodePod"]).start()

    def _namespace_changed(self, name: str, labels: dict | None) -> None:
        """A namespace entered or left --namespace-label-selector: list pods and PodGroups again."""
        if self.scope.namespaces.everything or "NodePod" not in self.informers:
            return
        now = labels is not None and self.scope.namespaces.matches(labels)
        was = self._ns_selected.get(name, False)
        if labels is None:
            self._ns_selected.pop(name, None)   # deleted: no entry kept per namespace ever seen
        else:
            self._ns_selected[name] = now
        if was != now:
            for kind in ("Pod", "PodGroup"):
                self.informers[kind].relist()

    def _apply_pod_deleted(self, kind: str, obj) -> bool:
        """With two pod informers, whether a DELETED really removes the pod. The unbound-pod
        informer also says DELETED when its pod gets bound; the pod then lives on through the
        bound-pod informer. A pod this process just bound (assumed) waits there for its ADDED;
        if that never comes, :meth:`_forget_gone_pods` removes it."""
        if "NodePod" not in self.informers:
            return True
        key, uid = _key(obj), obj.metadata.uid
        other = self.informers["NodePod" if kind == "Pod" else "Pod"].store.get(key)
        if other is not None and other.metadata.uid == uid:
            return False
        if kind == "Pod":
            p = self.state.pods.get(uid)
            if p is not None and p.node_name:
                self._maybe_gone[uid] = (key, time.monotonic())
                return False
        return True

    def _forget_gone_pods(self, grace: float = 5.0) -> None:
        now = time.monotonic()
        for uid, (key, since) in list(self._maybe_gone.items()):
            if any((o := self.informers[k].store.get(key)) is not None and o.metadata.uid == uid
                   for k in ("Pod", "NodePod")):
                del self._maybe_gone[uid]
            elif now - since > grace:
                del self._maybe_gone[uid]
                self._delete_pod(uid, key)

    def _delete_pod(self, uid: str, key: str) -> None:
        self.state.delete_pod(uid)
        self.dra.unassume(uid)
        self.binder.forget(uid, key)
        if self.grouper is not None:
            self.grouper.forget(uid)
        self.status.forget_pod(uid)

    def initial_sync(self, stop: threading.Event, timeout: float | None = None) -> bool:
        """Drain until every informer listed once, then bulk-load the state."""
        pending = set(self.informers)
        seen: dict[str, dict[str, Any]] = {k: {} for k in self.informers}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending and not stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return False
            try:
                kind, etype, obj = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "Binder":
                continue
            if etype == INVALID:
                self._report_invalid(obj)
            elif etype == SYNCED:
                pending.discard(kind)
            elif etype == DELETED:
                seen[kind].pop(_key(obj), None)
            else:
                seen[kind][_key(obj)] = obj
        if stop.is_set():
            return False
        seen["Pod"] = {**seen.get("Pod", {}), **seen.pop("NodePod", {})}    # bound version wins
        pods = seen.get("Pod", {})
        for k in [k for k, p in pods.items() if is_reservation_pod(p, self.reservations.namespace)]:
            p = pods.pop(k)
            self.reservation_pods[p.metadata.name] = p
        st = self.state
        try:
            st.load(nodes=seen.get("Node", {}).values(), podgroups=seen.get("PodGroup", {}).values(),
                    pods=seen.get("Pod", {}).values(), queues=seen.get("Queue", {}).values(),
                    priority_classes=seen.get("PriorityClass", {}).values(),
                    freeze=True)        # the first list lives long: out of every later collection
        except Exception as exc:   # noqa: BLE001 - one object the validators missed must not stop start-up
            log.exception("bulk load failed, loading object by object", error=str(exc))
            self._load_one_by_one(seen)
        for t in seen.get("Topology", {}).values():
            self._guarded("Topology", SYNCED, t, lambda t=t: self.state.upsert_topology(t))
        for ns in seen.get("Namespace", {}).values():
            self._guarded("Namespace", SYNCED, ns,
                          lambda ns=ns: st.upsert_namespace(ns.metadata.name, ns.metadata.labels))
            self._namespace_changed(ns.metadata.name, ns.metadata.labels)
        self.dra.load({k: v.values() for k, v in seen.items() if DraStore.handles(k)})
        st.storage.load({k: v.values() for k, v in seen.items() if StorageStore.handles(k)})
        # pods are offered to the pod-grouper by the first cycle that leads (only the leader groups)
        self.synced = True
        log.info("informers synced", **{k.lower() + "s": len(v) for k, v in seen.items()})
        self.warm()
        return True

    #: seconds between two warms of a standby replica (when the state changed between them)
    STANDBY_WARM_SECONDS = 5.0

    def warm(self) -> None:
        """Bring the scheduler's kept per-job figures and indexes up to date without deciding
        anything (``Scheduler.warm``): after the first sync, and now and then on a standby
        replica, so that the first cycle a replica leads costs what a steady cycle costs.
        Best effort: a failure is logged, and the next cycle builds what is missing."""
        try:
            seconds = self.scheduler.warm(now=time.time())
        except Exception as exc:   # noqa: BLE001 - warming is an optimisation, never fatal
            log.exception("warm-up failed", error=str(exc))
            return
        finally:
            self._warmed = (self.state.change_seq, time.monotonic())
        self.metrics.warm.set(seconds * 1000.0)
        log.info("scheduler warmed", seconds=round(seconds, 3), jobs=len(self.state.jobs))

    def _load_one_by_one(self, seen: dict[str, dict[str, Any]]) -> None:
        """A fresh state built with one guarded upsert per object (after a failed bulk load)."""
        self.state = ClusterState(scheduler_name=self.scheduler_name)
        self.scheduler.state = self.state
        for kind in ("PriorityClass", "Queue", "Node", "PodGroup", "Pod"):
            for obj in seen.get(kind, {}).values():
                self._guarded(kind, ADDED, obj, lambda k=kind, o=obj: self.apply(k, ADDED, o))

    def _guarded(self, kind: str, etype: str, obj: Any, fn) -> None:
        """Run ``fn`` (applying ``obj``); an exception reports ``obj`` as invalid instead of spreading."""
        try:
            fn()
        except Exception as exc:   # noqa: BLE001 - one malformed object must not stop the controller
            self.guard_failures += 1      # a validator missed something: the fuzz tests assert 0
            log.exception("applying event failed", kind=kind, type=etype, error=str(exc))
            m = getattr(obj, "metadata", None)
            if m is not None:
                self._report_invalid({"kind": kind, "namespace": m.namespace, "name": m.name, "uid": m.uid,
                                      "error": f"{type(exc).__name__}: {exc}"})

    # ------------------------------------------------------------------ events
    def drain(self) -> int:
        n = 0
        while True:
            try:
                kind, etype, obj = self.events.get_nowait()
            except queue.Empty:
                return n
            n += 1
            self._guarded(kind, etype, obj, lambda: self.apply(kind, etype, obj))

    def apply(self, kind: str, etype: str, obj: Any) -> None:
        st = self.state
        if kind == "Binder":
            self.binder.apply_result(st, etype, obj)
            return
        if etype == SYNCED:
            return
        if etype == INVALID:
            self._report_invalid(obj)
            return
        bad = self.invalid.get(kind)
        if bad and bad.pop(_key(obj), None) is not None:     # a good version (or deletion) arrived
            self.metrics.invalid_objects.labels(kind=kind).set(len(bad))
        if DraStore.handles(kind):
            self.dra.apply(kind, etype, obj)
            return
        if StorageStore.handles(kind):
            st.storage.apply(kind, etype, obj)
            return
        source = kind
        if kind == "NodePod":
            kind = "Pod"
        if kind == "Pod" and is_reservation_pod(obj, self.reservations.namespace):
            name = obj.metadata.name
            if etype == DELETED:
                self.reservation_pods.pop(name, None)
                self.reservations.forget(name, obj.metadata.labels.get(GPU_GROUP_LABEL, ""))
            else:
                self.reservation_pods[name] = obj
            return
        if kind == "Pod":
            if etype == DELETED:
                if self._apply_pod_deleted(source, obj):
                    self._delete_pod(obj.metadata.uid, _key(obj))
                return
            st.upsert_pod(obj)
            self.binder.reassume(st, obj)
            if self.grouper is not None and self._leading and source == "Pod":   # only the leader groups
                self.grouper.observe(obj)
        elif kind == "Node":
            if etype == DELETED:
                st.delete_node(obj.metadata.name)
            else:
                st.upsert_node(obj)
        elif kind == "PodGroup":
            if etype == DELETED:
                st.delete_podgroup(_key(obj))
                self.status.forget_podgroup(obj.metadata.namespace or "default", obj.metadata.name)
            else:
                st.upsert_podgroup(obj)
        elif kind == "Queue":
            if etype == DELETED:
                st.delete_queue(obj.metadata.name)
            else:
                st.upsert_queue(obj)
        elif kind == "PriorityClass":
            if etype == DELETED:
                st.priority_classes.pop(obj.metadata.name, None)
            else:
                st.upsert_priority_class(obj)
        elif kind == "Topology":
            if etype == DELETED:
                st.topologies.pop(obj.metadata.name, None)
            else:
                st.upsert_topology(obj)
        elif kind == "Namespace":
            if etype == DELETED:
                st.delete_namespace(obj.metadata.name)
            else:
                st.upsert_namespace(obj.metadata.name, obj.metadata.labels)
            self._namespace_changed(obj.metadata.name, None if etype == DELETED else obj.metadata.labels)

    # ------------------------------------------------------------------ cycle
    def cycle(self, leader: bool) -> None:
        """Drain the events; as the leader, run one scheduling cycle and write its results.

        Fencing: the cycle is abandoned (``fenced_cycles_total``) when the Lease is not held
        with margin; every write below also passes the client's fence, so a replica that was
        paused mid-cycle sends nothing once it may no longer be the only leader."""
        self.drain()
        if self._maybe_gone:
            self._forget_gone_pods()
        if not leader:
            self._leading = False
            seq, at = self._warmed
            if seq != self.state.change_seq and time.monotonic() - at >= self.STANDBY_WARM_SECONDS:
                self.warm()
            return
        if not self.fence():
            self.metrics.fenced_cycles.inc()
            log.warning("leader lease not held with margin: cycle abandoned")
            return
        if not self._leading:           # leadership (re)gained: group the pods seen meanwhile
            self._leading = True
            if self.grouper is not None:
                inf = self.informers.get("Pod")
                for p in list(inf.store.values()) if inf is not None else [t.pod for t in self.state.pods.values()]:
                    self._guarded("Pod", SYNCED, p, lambda p=p: self.grouper.observe(p))
            if self.usage is not None:
                self.usage.on_leading()
        self._regroup()
        if self.usage is not None:
            self.state.queue_resource_usage = self.usage.current()[0]
        sink = LiveCache(self.state, self.binder, self.status)
        result = self.scheduler.run_cycle(sink, now=time.time())
        if self.usage is not None:
            self.usage.record(self.state, result, time.time())
        self.cycles += 1
        self.last_result = result
        self.metrics.observe_cycle(result, state=self.state)
        self._report_unschedulable(result)
        self._report_problems()
        try:
            self.reporter.report(self.state, result)
        except Exception as exc:   # noqa: BLE001 - status is best effort, never stops the loop
            log.exception("status report failed", error=str(exc))
        self._sync_reservations()

    REGROUP_SECONDS = 2.0

    def _regroup(self) -> None:
        """Pods still without a PodGroup annotation go back to the pod-grouper every
        REGROUP_SECONDS: its API calls may have failed (429, 503, a reset); it skips pods
        it is already working on."""
        now = time.monotonic()
        if self.grouper is None or now - self._regrouped < self.REGROUP_SECONDS:
            return
        self._regrouped = now
        for key, why in list(self.state.pod_problems.items()):
            if C.POD_GROUP_ANNOTATION in why:
                pod = self._latest_pod(key)
                if pod is not None:
                    self._guarded("Pod", SYNCED, pod, lambda p=pod: self.grouper.observe(p))

    def live_gpu_groups(self) -> set[str]:
        """GPU groups that still have a fraction pod on a node (bound, binding or releasing)."""
        groups: set[str] = set()
        for p in self.state.pods.values():
            if p.gpu_sharing is not None and p.node_name and p.status & C.ACTIVE_USED and p.gpu_groups:
                groups.update(p.gpu_groups)
        return groups

    def _sync_reservations(self) -> None:
        """Delete reservation pods whose GPU group has no fraction pod left (KAI's binder sync);
        the DELETEs run on the binder's workers."""
        if not self.reservation_pods:
            return
        # only reservation pods on this shard's nodes: another shard's groups are not ours to judge
        nodes = self.state.nodes.by_name
        mine = [p for p in self.reservation_pods.values() if p.spec.node_name in nodes]
        for name in self.reservations.stale(mine, self.live_gpu_groups()):
            self.binder.pool.submit(self._delete_reservation, name)

    def _delete_reservation(self, name: str) -> None:
        try:
            self.reservations.delete(name)
        except Exception as exc:   # noqa: BLE001 - retried by a later sync
            log.warning("deleting reservation pod failed", pod=name, error=str(exc))

    def _report_problems(self, grace: float = 5.0) -> None:
        """Pods the scheduler cannot consider at all (their PodGroup is missing): after ``grace``
        seconds, a PodScheduled=False condition naming the problem, and an Event."""
        problems = self.state.pod_problems
        now = time.monotonic()
        seen = self._problem_seen
        for key in [k for k in seen if k not in problems]:
            del seen[key]
        for key, msg in problems.items():
            first = seen.setdefault(key, now)
            if now - first < grace:
                continue
            pod = self._latest_pod(key)
            if pod is None or pod.spec.node_name or not self._reports_on(pod):
                continue
            m = pod.metadata
            if any(c.type == "PodScheduled" and c.status == "False" and c.message == msg
                   for c in pod.status.conditions):
                continue
            self.status.pod_unschedulable(m.namespace, m.name, m.uid, msg, event=True)

    def _reports_on(self, pod) -> bool:
        """Whether this shard may write conditions on a pod it cannot schedule: the pod's own
        labels fall in its partition and its pod-grouper did not leave it to another shard."""
        if self.grouper is not None and pod.metadata.uid in self.grouper.foreign:
            return False
        return self.scope.in_partition(pod.metadata.labels)

    def _report_invalid(self, info: dict) -> None:
        """A malformed object: a Warning Event on it, the ``invalid_objects`` metrics (the
        informer or the guard logged it); everything else keeps being scheduled."""
        kind = info["kind"]
        bad = self.invalid.setdefault(kind, {})
        key = f"{info['namespace']}/{info['name']}" if info["namespace"] else info["name"]
        repeated = bad.get(key) == info["error"]
        bad[key] = info["error"]
        self.metrics.invalid_objects.labels(kind=kind).set(len(bad))
        self.metrics.invalid_reports.labels(kind=kind).inc()
        if repeated:        # the watch re-sent the same bad version (status heartbeat, relist): one Event is enough
            return
        api = {"Pod": "v1", "Node": "v1", "PodGroup": "scheduling.run.ai/v2alpha2", "Queue": "scheduling.run.ai/v2",
               "Topology": "kai.scheduler/v1alpha1", "PriorityClass": "scheduling.k8s.io/v1",
               "ResourceSlice": "resource.k8s.io/v1", "DeviceClass": "resource.k8s.io/v1",
               "ResourceClaim": "resource.k8s.io/v1", "ResourceClaimTemplate": "resource.k8s.io/v1",
               "PersistentVolume": "v1", "PersistentVolumeClaim": "v1", "ConfigMap": "v1",
               "StorageClass": "storage.k8s.io/v1", "CSINode": "storage.k8s.io/v1", "CSIDriver": "storage.k8s.io/v1",
               "CSIStorageCapacity": "storage.k8s.io/v1",
               "VolumeAttachment": "storage.k8s.io/v1"}.get(info["kind"], "")
        self.status.event({"kind": info["kind"], "apiVersion": api, "namespace": info["namespace"] or "default",
                           "name": info["name"], "uid": info["uid"]}, "InvalidObject",
                          f"{self.scheduler_name} ignores {info['kind']} {key}: {info['error']}", "Warning")

    def _report_unschedulable(self, result) -> None:
        for key, reasons in result.unschedulable.items():
            job = self.state.jobs.get(key)
            if job is None:
                continue
            message = "; ".join(dict.fromkeys(r for r in reasons if r)) or "pod group could not be scheduled"
            ns, name = key.split("/", 1)
            pg = self.state.podgroups.get(key)
            # already written (e.g. by a previous run of this process)? then leave it alone
            conds = (pg.status.get("schedulingConditions") or []) if pg is not None else []
            if not any((r or {}).get("message") == message for c in conds for r in c.get("reasons") or []):
                self.status.podgroup_unschedulable(ns, name, pg.metadata.uid if pg else "", message,
                                                   node_pool=self.scope.node_pool)
            for t in list(getattr(job, "tasks", {}).values()):
                if not t.node_name and t.status & C.PodStatus.PENDING:
                    if any(c.type == "PodScheduled" and c.status == "False" and c.message == message
                           for c in t.pod.status.conditions):
                        continue
                    self.status.pod_unschedulable(t.namespace, t.name, t.uid, message)

    def finish(self, grace: float) -> tuple[int, int]:
        """Graceful shutdown, step 1: no new cycle; let in-flight bindings and evictions finish
        for up to ``grace`` seconds, then drop the ones not started (their pods stay pending
        for the next leader; a gang cut this way is finished by it, or evicted as stale).
        Returns (finished, dropped)."""
        return self.binder.finish(grace)

    def stop(self) -> None:
        for inf in self.informers.values():
            inf.stop(timeout=2.0)
        if self.grouper is not None:
            self.grouper.stop()
        if self.usage is not None:
            self.usage.stop()
        self.binder.shutdown(wait=True)
        self.status.stop()


def _ensure_namespace(client: KubeClient, ns: str) -> None:
    try:
        client.get(f"/api/v1/namespaces/{ns}")
    except ApiError as exc:
        if exc.status == 404:
            try:
                client.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            except ApiError as exc2:
                log.warning("cannot create lease namespace", namespace=ns, error=str(exc2))


def report_unimplemented_plugins(status, config) -> list[str]:
    """Scheduler config plugins kai does not implement: a warning log line each and one Warning
    Event on the scheduler's own pod (POD_NAME / POD_NAMESPACE from the chart's downward API)."""
    warnings = unimplemented_plugins(config)
    for w in warnings:
        log.warning("scheduler config: plugin not implemented", detail=w)
    pod, ns = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if warnings and pod and ns:
        status.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": pod},
                     "PluginNotImplemented", "; ".join(warnings), "Warning")
    return warnings


def run_controller(args, config) -> int:
    """Entry point of ``kai scheduler``; returns the process exit code.

    SIGTERM / SIGINT: the cycle loop stops, in-flight bindings get ``--shutdown-grace-period``
    to finish (:meth:`Controller.finish`), then the Lease is released at once (a follower
    watching it takes over within a second) and the process exits 0. Losing the Lease exits 1.
    """
    try:
        raw = KubeClient.from_kubeconfig(getattr(args, "kubeconfig", None),
                                         maxsize=max(32, getattr(args, "bind_workers", 16) + 16))
    except KubeconfigError as exc:
        log.error("no cluster credentials", error=str(exc))
        return 2
    scheduler_name = getattr(args, "scheduler_name", C.SCHEDULER_NAME)
    scope = getattr(args, "_scope", None) or Scope.from_args(args)
    period = float(getattr(args, "schedule_period", 1.0))
    grace = float(getattr(args, "shutdown_grace_period", 20.0))
    stop = threading.Event()
    exit_code = [0]

    def on_signal(signum, frame) -> None:
        log.info("signal received, stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    metrics = Metrics(getattr(args, "metrics_namespace", "kai") or "kai")
    identity = getattr(args, "identity", None) or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    elector = None
    if getattr(args, "leader_elect", False):
        ns = getattr(args, "namespace", "kai-scheduler")
        _ensure_namespace(raw, ns)

        def lost() -> None:
            exit_code[0] = 1
            stop.set()

        elector = LeaderElector(raw, ns, getattr(args, "lease_name", None) or scope.lease_name(scheduler_name),
                                identity,
                                lease_duration=float(getattr(args, "leader_elect_lease_duration", 15.0)),
                                renew_deadline=float(getattr(args, "leader_elect_renew_deadline", 10.0)),
                                retry_period=float(getattr(args, "leader_elect_retry_period", 2.0)),
                                on_stopped=lost)
    holds = elector.holds if elector is not None else (lambda: True)

    def write_fence() -> bool:
        ok = holds()
        if not ok:
            metrics.fenced_writes.inc()
        return ok

    # every write but the Lease's own goes through the fence; the User-Agent names the replica
    client = raw.fenced(write_fence, user_agent=f"kai-scheduler/{kai.__version__} ({identity})")
    # --qps / --burst bound everything but the Lease (its renewals never queue behind bindings)
    client.limiter = rate_limiter(float(getattr(args, "qps", 50.0)), int(getattr(args, "burst", 300)))
    ctl = Controller(client, config, scheduler_name=scheduler_name, metrics=metrics,
                     bind_workers=getattr(args, "bind_workers", 16), fence=holds,
                     volume_bind_timeout=getattr(args, "volume_binding_timeout_seconds", 120.0), scope=scope)
    log.info("scheduling shard", node_pool=scope.node_pool, nodepool_label_key=scope.node_pool_label_key,
             lease=getattr(args, "lease_name", None) or scope.lease_name(scheduler_name))
    report_unimplemented_plugins(ctl.status, config)
    ctl.usage = build_usage_lister(getattr(config, "usage_db", None), client, getattr(args, "namespace", "kai-scheduler"),
                                   scheduler_name, on_latency=lambda s: metrics.usage_query.observe(s * 1000.0))
    health = None
    port = getattr(args, "metrics_port", 8080)
    if port is not None and port >= 0:
        health = HealthServer(metrics, port, ready=lambda: ctl.synced, debug=ctl.debug_state).start()
        log.info("serving metrics and health", port=health.port)
    profiler = prof_server = None
    if getattr(args, "enable_profiler", False):
        profiler = CycleProfiler()
        prof_server = ProfilerServer(profiler, getattr(args, "profiler_port", 8182)).start()
        log.info("serving the profiler", port=prof_server.port)
    if elector is not None:
        elector.start()

    def is_leader() -> bool:
        return elector is None or elector.is_leader.is_set()

    ctl.start()
    try:
        if ctl.initial_sync(stop):
            if ctl.usage is not None:
                ctl.usage.wait_for_first(stop)
            next_t = time.monotonic()
            while not stop.is_set():
                leader = is_leader()
                metrics.is_leader.set(1 if leader else 0)
                try:
                    if profiler is not None:
                        profiler.run(ctl.cycle, leader)
                    else:
                        ctl.cycle(leader)
                except Exception as exc:   # noqa: BLE001 - a failing cycle is logged, the next one retries
                    log.exception("cycle failed", error=str(exc))
                next_t += period
                delay = next_t - time.monotonic()
                if delay < 0:
                    next_t = time.monotonic()
                    delay = 0
                stop.wait(delay)
    finally:
        finished, dropped = ctl.finish(grace)
        if elector is not None:
            elector.stop(release=exit_code[0] == 0)
        metrics.is_leader.set(0)
        log.info("stopping", bindings_finished=finished, bindings_dropped=dropped)
        ctl.stop()
        if health is not None:
            health.stop()
        if prof_server is not None:
            prof_server.stop()
        log.info("stopped", cycles=ctl.cycles, bindings=ctl.binder.bind_count)
    return exit_code[0]
