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


def pod_ref(pod: Any) -> dict[str, str]:
    m = pod.metadata
    return {"kind": "Pod", "apiVersion": "v1", "namespace": m.namespace or "default", "name": m.name, "uid": m.uid}
