"""Status writes off the scheduling path: Events, pod PodScheduled conditions, PodGroup status.

:class:`StatusWriter` owns a few worker threads fed by a bounded queue; callers (the
controller thread, the binder) only enqueue, and a full queue drops the write rather than
block a cycle. Events are aggregated as client-go's recorder does: the same (object, reason,
message) bumps ``count``/``lastTimestamp`` of the existing Event, at most every 30 s.
Unschedulable pods get ``PodScheduled=False`` reason ``Unschedulable`` with the scheduler's
message (so cluster autoscalers react) and PodGroups ``status.schedulingConditions`` of type
``UnschedulableOnNodePool``, written only when the message changes.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import structlog

from kai.api import constants as C
from kai.api.queue_info import queue_warnings, validate_queue
from kai.api.quota import MigColumns, quota_tuple
from kai.cache.kubeclient import ApiError, KubeClient

log = structlog.get_logger("kai.status")

COMPONENT = "kai-scheduler"
EVENT_REPEAT_INTERVAL = 30.0


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StatusWriter:
    """Worker threads running API writes; ``submit`` never blocks."""

    def __init__(self, client: KubeClient, workers: int = 2, maxsize: int = 10000,
                 instance: str = "") -> None:
        self.client = client
        self.instance = instance or f"{COMPONENT}-{uuid.uuid4().hex[:6]}"
        self._q: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._events: dict[tuple, list] = {}        # (uid, reason, message) -> [name, ns, count, last_write]
        self._pod_msgs: dict[str, str] = {}         # pod uid -> last PodScheduled message written
        self._pg_msgs: dict[str, str] = {}          # podgroup key -> last condition message written
        self._lock = threading.Lock()
        self.dropped = 0
        self._threads = [threading.Thread(target=self._run, name=f"status-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            try:
                self._q.put_nowait(None)
            except queue.Full:
                pass

    def submit(self, fn: Callable[[], Any]) -> None:
        try:
            self._q.put_nowait(fn)
        except queue.Full:
            self.dropped += 1

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the queue is empty (tests)."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self) -> None:
        while not self._stop.is_set():
            fn = self._q.get()
            try:
                if fn is None:
                    return
                fn()
            except ApiError as exc:
                log.debug("status write failed", error=str(exc))
            except Exception as exc:   # noqa: BLE001 - a status write must never kill the worker
                log.warning("status write failed", error=str(exc))
            finally:
                self._q.task_done()

    # ------------------------------------------------------------------ events
    def event(self, obj: dict[str, str], reason: str, message: str, etype: str = "Normal") -> None:
        """Record an Event on ``obj`` ({kind, apiVersion, namespace, name, uid})."""
        self.submit(lambda: self._write_event(obj, reason, message, etype))

    def _write_event(self, obj: dict[str, str], reason: str, message: str, etype: str) -> None:
        key = (obj.get("uid") or f"{obj.get('namespace')}/{obj.get('name')}", reason, message)
        ns = obj.get("namespace") or "default"
        now = time.monotonic()
        with self._lock:
            agg = self._events.get(key)
            if agg is not None:
                agg[2] += 1
                if now - agg[3] < EVENT_REPEAT_INTERVAL:
                    return
                agg[3] = now
                name, count = agg[0], agg[2]
        if agg is not None:
            try:
                self.client.patch(f"/api/v1/namespaces/{ns}/events/{name}",
                                  {"count": count, "lastTimestamp": now_rfc3339()})
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
        name = f"{obj.get('name')}.{uuid.uuid4().hex[:16]}"
        ts = now_rfc3339()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {k: obj[k] for k in ("kind", "apiVersion", "namespace", "name", "uid") if obj.get(k)},
            "reason": reason, "message": message[:1024], "type": etype,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        }
        self.client.post(f"/api/v1/namespaces/{ns}/events", body)
        with self._lock:
            self._events[key] = [name, ns, 1, now]
            if len(self._events) > 50000:
                self._events.clear()

    # ------------------------------------------------------------------ conditions
    def pod_unschedulable(self, ns: str, name: str, uid: str, message: str, event: bool = False) -> None:
        with self._lock:
            if self._pod_msgs.get(uid) == message:
                return
            self._pod_msgs[uid] = message
        if event:
            self.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name, "uid": uid},
                       "Unschedulable", message, "Warning")

        def write() -> None:
            body = {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                               "message": message, "lastTransitionTime": now_rfc3339()}]}}
            try:
                self.client.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", body, kind="strategic")
            except ApiError:
                with self._lock:
                    self._pod_msgs.pop(uid, None)
                raise
        self.submit(write)

    def forget_pod(self, uid: str) -> None:
        with self._lock:
            self._pod_msgs.pop(uid, None)

    def podgroup_unschedulable(self, ns: str, name: str, uid: str, message: str, node_pool: str = "default",
                               reason: str = "PodSchedulingErrors") -> None:
        key = f"{ns}/{name}"
        with self._lock:
            if self._pg_msgs.get(key) == message:
                return
            self._pg_msgs[key] = message

        def write() -> None:
            cond = {"type": "UnschedulableOnNodePool", "nodePool": node_pool, "status": "True",
                    "transitionID": uuid.uuid4().hex[:8], "lastTransitionTime": now_rfc3339(),
                    "reasons": [{"reason": reason, "message": message}]}
            try:
                self.client.patch(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups/{name}/status",
                                  {"status": {"schedulingConditions": [cond]}})
            except ApiError:
                with self._lock:
                    self._pg_msgs.pop(key, None)
                raise
        self.submit(write)
        self.event({"kind": "PodGroup", "apiVersion": "scheduling.run.ai/v2alpha2", "namespace": ns,
                    "name": name, "uid": uid}, "Unschedulable", message, "Warning")

    def podgroup_scheduled(self, ns: str, name: str) -> None:
        """Clear the remembered condition so a later failure is written again."""
        with self._lock:
            self._pg_msgs.pop(f"{ns}/{name}", None)

    def forget_podgroup(self, ns: str, name: str) -> None:
        """The PodGroup was deleted: a new one of the same name gets its conditions written
        afresh (and one remembered message per deleted PodGroup does not pile up)."""
        self.podgroup_scheduled(ns, name)


def pod_ref(pod: Any) -> dict[str, str]:
    m = pod.metadata
    return {"kind": "Pod", "apiVersion": "v1", "namespace": m.namespace or "default", "name": m.name, "uid": m.uid}


# ---------------------------------------------------------------------- Queue / PodGroup status
QUEUE_API = "/apis/scheduling.run.ai/v2/queues"
PODGROUP_API = "/apis/scheduling.run.ai/v2alpha2"
GPU_RESOURCE = "nvidia.com/gpu"


def _milli(v: float) -> str:
    """A quantity from a value in units (``1.5`` -> ``1500m``, ``2`` -> ``2``)."""
    m = int(round(float(v) * 1000))
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"


def resource_list(vec) -> dict[str, str]:
    """(gpu devices, cpu millicores, memory bytes) -> a ResourceList of quantities
    (``nvidia.com/gpu`` may be fractional, e.g. ``500m``)."""
    gpu, cpu, mem = (float(x) for x in vec)
    return {GPU_RESOURCE: _milli(gpu), "cpu": _milli(cpu / 1000.0), "memory": str(int(round(mem)))}


def _strip_times(conds: list) -> list:
    return [{k: v for k, v in (c or {}).items() if k != "lastTransitionTime"} for c in conds or []]


def _keep_times(new: list, old: list) -> list:
    """Conditions keep their lastTransitionTime while type and status are unchanged."""
    prev = {(c or {}).get("type"): c for c in old or []}
    for c in new:
        o = prev.get(c["type"])
        c["lastTransitionTime"] = (o.get("lastTransitionTime") if o and o.get("status") == c["status"]
                                   and o.get("lastTransitionTime") else now_rfc3339())
    return new


def _same(desired: dict, current: dict) -> bool:
    """``desired`` (a status fragment) is already what the object holds."""
    for k, v in desired.items():
        cur = (current or {}).get(k)
        if k == "conditions":
            if _strip_times(v) != _strip_times(cur):
                return False
        elif v != cur and not (v in ({}, []) and cur is None):
            return False
    return True


def queue_conditions(name: str, problem: str | None, own_spec_error: bool, usage: dict | None) -> list[dict]:
    """KAI's Queue conditions: ``Orphan`` (parent missing, parent cycle, or an unusable
    ancestor) and ``OverQuota`` (allocated > deserved in some resource with a finite quota)."""
    conds: list[dict] = []
    if problem and not own_spec_error:
        reason = ("ParentQueueCycle" if "cycle" in problem
                  else "ParentQueueNotFound" if "does not exist" in problem else "ParentQueueUnusable")
        conds.append({"type": "Orphan", "status": "True", "reason": reason, "message": problem})
    if usage:
        over = [r for r, a, d in zip(("gpu", "cpu", "memory"), usage["allocated"], usage["deserved"])
                if d >= 0 and a > d + 1e-9]
        if over:
            conds.append({"type": "OverQuota", "status": "True", "reason": "AllocatedOverDeserved",
                          "message": f"queue {name} is allocated over its quota in: {', '.join(over)}"})
    return conds


def build_queue_statuses(queues: dict, result) -> dict[str, dict]:
    """Desired ``status`` per Queue object from a cycle's result (``queue_usage``,
    ``queue_problems``) and the Queue objects themselves (``childQueues``)."""
    children: dict[str, list[str]] = {}
    for q in queues.values():
        if q.spec.parent_queue:
            children.setdefault(q.spec.parent_queue, []).append(q.metadata.name)
    zero = resource_list((0, 0, 0))
    out = {}
    for name, q in queues.items():
        usage = result.queue_usage.get(name)
        problem = result.queue_problems.get(name)
        st = {"childQueues": sorted(children.get(name, [])),
              "allocated": resource_list(usage["allocated"]) if usage else zero,
              "allocatedNonPreemptible": resource_list(usage["allocatedNonPreemptible"]) if usage else zero,
              "requested": resource_list(usage["requested"]) if usage else zero,
              "conditions": queue_conditions(name, problem, bool(problem and validate_queue(q)), usage)}
        warnings = queue_warnings(q)
        if warnings:        # KAI's semantics apply all the same; the condition says what they do
            st["conditions"].append({"type": "SpecWarning", "status": "True", "reason": "UnusualValues",
                                     "message": "; ".join(warnings)})
        out[name] = st
    return out


def podgroup_phase(pg, running: int, pending: int, succeeded: int, failed: int) -> str:
    total = running + pending + succeeded + failed
    min_member = max(1, int(getattr(pg.spec, "min_member", 1) or 1))
    if total and succeeded == total:
        return "Succeeded"
    if failed and running + succeeded < min_member:
        return "Failed"
    if running and running + succeeded >= min_member:
        return "Running"
    return "Pending"


def build_podgroup_status(pg, job, mig_cols: MigColumns = ()) -> dict:
    """``phase``, pod counts by pod phase, and ``resourcesStatus`` (allocated: tasks bound or
    being bound; requested: allocated + pending; non-preemptible when the job is), with
    GPUs counted as queue quota counts them (``kai.api.quota``)."""
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    alloc = [0.0, 0.0, 0.0]
    req = [0.0, 0.0, 0.0]
    tasks = list(job.tasks.values()) if job is not None else []
    for t in tasks:
        phase = t.pod.status.phase or "Pending"
        if phase in counts:
            counts[phase] += 1
        st = t.status
        if st & C.ALLOCATED or st == C.PodStatus.PENDING:
            v = quota_tuple(t, mig_cols)
            for i in range(3):
                req[i] += float(v[i])
                if st & C.ALLOCATED:
                    alloc[i] += float(v[i])
    preemptible = getattr(job, "preemptible", True) if job is not None else True
    return {"phase": podgroup_phase(pg, counts["Running"], counts["Pending"], counts["Succeeded"],
                                    counts["Failed"]),
            "running": counts["Running"], "pending": counts["Pending"],
            "succeeded": counts["Succeeded"], "failed": counts["Failed"],
            "resourcesStatus": {"allocated": resource_list(alloc),
                                "allocatedNonPreemptible": resource_list((0, 0, 0) if preemptible else alloc),
                                "requested": resource_list(req)}}


class StatusReporter:
    """Turns a cycle's result and the ClusterState into Queue and PodGroup status writes.

    Runs on the controller thread after a cycle (cheap: a dict per object), compares with what
    the object already holds and with what was last submitted, and hands only changes to the
    :class:`StatusWriter` (merge-patch on the ``status`` subresource). A bad Queue also gets a
    Warning Event naming its problem, once per distinct problem.
    """

    def __init__(self, writer: StatusWriter) -> None:
        self.writer = writer
        self._queues: dict[str, dict] = {}       # name -> status last submitted
        self._pgs: dict[str, tuple[str, dict]] = {}   # ns/name -> (uid, status last submitted)
        self._queue_problem: dict[str, str] = {}
        self._queue_uids: dict[str, str] = {}    # name -> uid of the Queue the two above are about
        self._last_full = float("-inf")

    FULL_PASS_SECONDS = 60.0    # recompute every PodGroup's status at least this often

    def report(self, state, result) -> int:
        n = self.report_queues(state.queues, result)
        dirty = getattr(state, "dirty_jobs", None)
        now = time.monotonic()
        if dirty is None or now - self._last_full >= self.FULL_PASS_SECONDS:
            self._last_full = now
            only = None
        else:
            only = set(dirty)
        if dirty is not None:
            dirty.clear()
        return n + self.report_podgroups(state.podgroups, state.jobs, only, state.registry.mig_columns())

    def _forget_queue(self, name: str) -> None:
        self._queues.pop(name, None)
        self._queue_problem.pop(name, None)
        self._queue_problem.pop("warn:" + name, None)
        self._queue_uids.pop(name, None)

    def report_queues(self, queues: dict, result) -> int:
        n = 0
        desired = build_queue_statuses(queues, result)
        for name in [k for k in self._queue_uids if k not in queues]:
            self._forget_queue(name)
        for name, st in desired.items():
            q = queues[name]
            if self._queue_uids.get(name) != q.metadata.uid:
                # new, or made again under its name: what was written about the old one
                # does not count for it
                self._forget_queue(name)
                self._queue_uids[name] = q.metadata.uid
            problem = result.queue_problems.get(name)
            if problem and self._queue_problem.get(name) != problem:
                self.writer.event({"kind": "Queue", "apiVersion": "scheduling.run.ai/v2", "namespace": "default",
                                   "name": name, "uid": q.metadata.uid}, "InvalidQueue" if not any(
                                       c["type"] == "Orphan" for c in st["conditions"]) else "OrphanQueue",
                                  f"queue {name} is not scheduled: {problem}", "Warning")
            warn = next((c["message"] for c in st["conditions"] if c["type"] == "SpecWarning"), "")
            if warn and self._queue_problem.get("warn:" + name) != warn:
                self.writer.event({"kind": "Queue", "apiVersion": "scheduling.run.ai/v2", "namespace": "default",
                                   "name": name, "uid": q.metadata.uid}, "QueueSpecWarning",
                                  f"queue {name} is scheduled with KAI's meaning of: {warn}", "Warning")
            self._queue_problem["warn:" + name] = warn
            if problem:
                self._queue_problem[name] = problem
            else:
                self._queue_problem.pop(name, None)
            if _same(st, self._queues.get(name) or {}) or _same(st, q.status):
                self._queues[name] = st
                continue
            st["conditions"] = _keep_times(st["conditions"], (q.status or {}).get("conditions"))
            self._queues[name] = st
            self._patch(f"{QUEUE_API}/{name}/status", st, lambda name=name: self._queues.pop(name, None))
            n += 1
        return n

    def report_podgroups(self, podgroups: dict, jobs: dict, only: set | None = None,
                         mig_cols: MigColumns = ()) -> int:
        """Write changed PodGroup statuses; ``only``: just these keys (jobs whose pods changed)."""
        n = 0
        for key in [k for k in self._pgs if k not in podgroups]:
            del self._pgs[key]
        if only is None:
            items = podgroups.items()
        else:
            items = [(k, podgroups[k]) for k in only if k in podgroups]
            items += [(k, pg) for k, pg in podgroups.items() if k not in self._pgs and k not in only]
        for key, pg in items:
            st = build_podgroup_status(pg, jobs.get(key), mig_cols)
            uid = pg.metadata.uid
            last = self._pgs.get(key)
            # (a PodGroup made again under its name between two reports is a new object:
            # what was written to the old one does not count)
            if (last is not None and last[0] == uid and _same(st, last[1])) or _same(st, pg.status):
                self._pgs[key] = (uid, st)
                continue
            self._pgs[key] = (uid, st)
            ns, name = key.split("/", 1)
            self._patch(f"{PODGROUP_API}/namespaces/{ns}/podgroups/{name}/status", st,
                        lambda key=key: self._pgs.pop(key, None))
            n += 1
        return n

    def _patch(self, path: str, status: dict, on_error: Callable[[], Any]) -> None:
        client = self.writer.client

        def write() -> None:
            try:
                client.patch(path, {"status": status})
            except ApiError as exc:
                on_error()          # written again after the next cycle
                if exc.status != 404:
                    raise
        self.writer.submit(write)
