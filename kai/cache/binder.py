"""The live commit sink: bindings, evictions and pipeline Events against the API server.

:class:`LiveCache` is what ``Scheduler.run_cycle`` commits into in the live controller (the
counterpart of ``RecordingCache``). Each decision is applied to the ClusterState at once
(``assume_bound`` / ``assume_evicted``) so the next cycle sees it before the watch confirms,
and handed to :class:`Binder`, whose worker pool does the API calls:

- bind: ``POST pods/{name}/binding`` (raw; the official client cannot parse the answer),
  retried with backoff on 5xx/429/timeouts; a 409 (already assigned) is final, and a pod the
  informer already shows on a node is never bound again;
- evict: pod condition ``DisruptionTarget`` (status patch), then ``DELETE`` with the pod's UID
  as precondition (KAI's evictor);
- pipeline: an Event only;
- fraction pods, before binding (KAI's binder steps, ``kai.cache.reservation``): for each GPU
  group a reservation pod is found or created on the node and its GPU UUID awaited (bounded;
  on timeout the pod is still bound, with a ``GPUReservationTimeout`` Warning Event); the pod
  is labelled with its groups (``runai-gpu-group``, KAI's labels, so any cache rebuilt from the
  API charges the same groups) and annotated with its ConfigMap prefix
  (``runai/shared-gpu-configmap``); the ConfigMap ``<prefix>-0`` gets
  ``NVIDIA_VISIBLE_DEVICES`` and ``GPU_PORTION``. A failed bind deletes that ConfigMap again.
  All of it runs on the worker threads, never in the cycle.
- volumes, before anything else (VolumeBinding's PreBind, ``kai.cache.volume_prebind``): each
  claim the placement decided (``PodInfo.volume_plan``) is bound to its PV (the PV's claimRef
  is set, the PV controller completes the binding) or gets ``volume.kubernetes.io/selected-node``
  for dynamic provisioning; the worker waits (bounded) until every claim is bound. If that
  fails, its own writes are undone where the PV controller has not acted yet, and the pod is not
  bound (``FailedBinding`` Event; the scheduler forgets the assumed volumes).

Outcomes come back to the controller thread through the informers' event queue as
``("Binder", kind, payload)``; the controller (the single writer) keeps assumptions alive
across watch updates and drops them when the watch confirms or the call failed
(``Binder.apply_result`` / ``Binder.reassume``). A failed gang member stays recorded in
``failed_binds``; the stale-gang action evicts what remains of a partial gang.
"""
from __future__ import annotations

import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import structlog

from kai.api.pod_info import fraction_configmap_suffix
from kai.cache.cluster_state import shared_portion
from kai.cache.kubeclient import ApiError, Fenced, KubeClient, retry_delay
from kai.cache.reservation import CONFIGMAP_ANNOTATION, ReservationService, configmap_prefix
from kai.cache.status import StatusWriter, now_rfc3339
from kai.cache.volume_prebind import VolumeBindError, bind_pod_volumes
from kai.cache.decisions import CycleResult, Decision
from kai.cache.dra_binding import ClaimBindError, claim_writes, release_claims, reserve_claims

log = structlog.get_logger("kai.binder")

BIND_OK, BIND_FAILED, EVICT_FAILED = "BIND_OK", "BIND_FAILED", "EVICT_FAILED"
GPU_GROUP_LABEL = "runai-gpu-group"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class Binder:
    """Bounded-concurrency API writer for scheduling decisions."""

    def __init__(self, client: KubeClient, events: "queue.Queue", workers: int = 16, max_attempts: int = 5,
                 latest_pod: Callable[[str], Any] | None = None, status: StatusWriter | None = None,
                 scheduler_name: str = "kai-scheduler", on_bound: Callable[[float], None] | None = None,
                 reservations: ReservationService | None = None, volume_bind_timeout: float = 120.0) -> None:
        self.client = client
        self.volume_bind_timeout = volume_bind_timeout
        self.reservations = reservations
        self.events = events
        self.max_attempts = max_attempts
        self.latest_pod = latest_pod or (lambda key: None)
        self.status = status
        self.scheduler_name = scheduler_name
        self.on_bound = on_bound
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bind")
        # start every worker now (the executor adds threads as load rises): a thread count that
        # grows with the first bursts of work would look like a leak on a soak graph
        ready = threading.Barrier(workers + 1)
        for _ in range(workers):
            self.pool.submit(ready.wait, 10)
        ready.wait(10)
        # touched by the controller thread only
        self.assumed_bind: dict[str, tuple[str, str]] = {}     # uid -> (pod key, node)
        self.assumed_evict: dict[str, str] = {}               # uid -> pod key
        self.failed_binds: dict[str, str] = {}                # pod key -> reason (last failure)
        self.bind_count = 0
        self._lock = threading.Lock()
        self._pending: set = set()                            # futures not done yet

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=not wait)

    def finish(self, grace: float) -> tuple[int, int]:
        """Stop taking work; wait up to ``grace`` seconds for queued and running bindings and
        evictions, then cancel those not started (their pods stay as the API server has them:
        pending, for the next leader). Returns (finished meanwhile, cancelled)."""
        with self._lock:
            pending = list(self._pending)
        deadline = time.monotonic() + max(grace, 0.0)
        for f in pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                f.result(timeout=left)
            except Exception:   # noqa: BLE001 - timeouts and failures: counted below
                pass
        cancelled = sum(1 for f in pending if f.cancel())
        self.pool.shutdown(wait=False, cancel_futures=True)
        return sum(1 for f in pending if f.done() and not f.cancelled()), cancelled

    def _submit(self, fn, *args) -> None:
        f = self.pool.submit(fn, *args)
        with self._lock:
            self._pending.add(f)
        f.add_done_callback(self._done)

    def _done(self, f) -> None:
        with self._lock:
            self._pending.discard(f)

    # ------------------------------------------------------------------ submission (controller thread)
    def can_bind(self, uid: str) -> bool:
        return uid not in self.assumed_bind

    def submit_bind(self, ns: str, name: str, uid: str, node: str, gpu_groups: list[str] | None = None,
                    portion: float = 0.0, volumes: tuple = (), claims: list | None = None) -> None:
        """``volumes``: the pod's volume decisions (VolumeBinding's PreBind, kai.cache.volume_prebind);
        ``claims``: its ResourceClaim writes (kai.cache.dra_binding.claim_writes); both done before binding."""
        self.assumed_bind[uid] = (f"{ns}/{name}", node)
        self.bind_count += 1
        self._submit(self._bind, ns, name, uid, node, time.monotonic(), list(gpu_groups or ()), portion,
                     tuple(volumes), claims or [])

    def submit_evict(self, ns: str, name: str, uid: str, message: str) -> None:
        self.assumed_evict[uid] = f"{ns}/{name}"
        self._submit(self._evict, ns, name, uid, message)

    # ------------------------------------------------------------------ workers
    def _bind(self, ns: str, name: str, uid: str, node: str, t0: float, gpu_groups: list[str] = (),
              portion: float = 0.0, volumes: tuple = (), claims: list = ()) -> None:
        key = f"{ns}/{name}"
        latest = self.latest_pod(key)
        if latest is not None and (latest.spec.node_name or latest.metadata.uid != uid):
            why = (f"already on node {latest.spec.node_name}" if latest.spec.node_name
                   else "pod was replaced")
            self.events.put(("Binder", BIND_FAILED, (uid, key, node, why)))
            return
        # ---- step: volumes (VolumeBinding's PreBind) -- nothing else runs unless they are bound
        if volumes:
            try:
                bind_pod_volumes(self.client, ns, name, uid, node, volumes, self.volume_bind_timeout)
            except Fenced as exc:       # not leading any more: nothing more is written, no Event
                self.events.put(("Binder", BIND_FAILED, (uid, key, node, str(exc))))
                return
            except (VolumeBindError, ApiError) as exc:
                reason = f"binding volumes of {key} on {node} failed: {exc}"
                log.warning("volume binding failed", pod=key, node=node, error=str(exc))
                if self.status is not None:
                    self.status.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name,
                                       "uid": uid}, "FailedBinding", reason, "Warning")
                self.events.put(("Binder", BIND_FAILED, (uid, key, node, reason)))
                return
        # ---- end of the volumes step
        cm_prefix = ""
        if gpu_groups:
            try:
                cm_prefix = self._prepare_shared(ns, name, uid, node, gpu_groups, portion, latest)
            except Fenced as exc:
                self.events.put(("Binder", BIND_FAILED, (uid, key, node, str(exc))))
                return
            except ApiError as exc:
                reason = f"reserving the shared GPU for {key} failed: {exc}"
                log.warning("shared GPU preparation failed", pod=key, node=node, error=str(exc))
                self.events.put(("Binder", BIND_FAILED, (uid, key, node, reason)))
                return
        # ---- DRA: the claims' allocation and reservedFor, before the binding (kai.cache.dra_binding)
        claims_done = self._reserve_claims(ns, name, uid, node, claims) if claims else []
        if claims_done is None:
            return
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body)
                if self.on_bound is not None:
                    self.on_bound(time.monotonic() - t0)
                self.events.put(("Binder", BIND_OK, (uid, key, node, "")))
                return
            except Fenced as exc:       # no longer sure we lead: not sent, no Event (that is a write too)
                log.warning("bind not sent: lease not held", pod=key, node=node)
                self.events.put(("Binder", BIND_FAILED, (uid, key, node, str(exc))))
                return
            except ApiError as exc:
                if exc.status == 409 and f'"{node}"' in exc.message:
                    # an earlier attempt whose answer was lost did bind it to this very node
                    self.events.put(("Binder", BIND_OK, (uid, key, node, "")))
                    return
                if not exc.retryable or attempt == self.max_attempts:
                    reason = f"binding {key} to {node} failed: {exc}"
                    log.warning("bind failed", pod=key, node=node, error=str(exc), attempts=attempt)
                    if self.status is not None:
                        self.status.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name,
                                           "uid": uid}, "FailedBinding", reason, "Warning")
                    if cm_prefix and self.reservations is not None:
                        self.reservations.delete_configmaps(ns, cm_prefix,
                                                            fraction_configmap_suffix(self.latest_pod(key)))
                    release_claims(self.client, uid, claims_done)      # DRA: nothing half done
                    self.events.put(("Binder", BIND_FAILED, (uid, key, node, reason)))
                    return
                # before retrying, make sure an earlier attempt did not bind it after all
                latest = self.latest_pod(key)
                if latest is not None and latest.spec.node_name == node:
                    self.events.put(("Binder", BIND_OK, (uid, key, node, "")))
                    return
                time.sleep(retry_delay(exc, attempt))

    def _reserve_claims(self, ns: str, name: str, uid: str, node: str, claims: list) -> list | None:
        """DRA PreBind (kai.cache.dra_binding): the written claims, or None when it failed (then
        nothing of it is left, BIND_FAILED is reported and a Warning Event names the claim)."""
        try:
            return reserve_claims(self.client, name, uid, claims)
        except ClaimBindError as exc:
            reason = f"binding {ns}/{name} to {node} failed: {exc}"
            log.warning("resource claims not written", pod=f"{ns}/{name}", node=node, error=str(exc))
            if self.status is not None:
                self.status.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name, "uid": uid},
                                  "FailedBinding", reason, "Warning")
            self.events.put(("Binder", BIND_FAILED, (uid, f"{ns}/{name}", node, reason)))
            return None

    def _prepare_shared(self, ns: str, name: str, uid: str, node: str, groups: list[str], portion: float,
                        latest) -> str:
        """KAI's binder steps for a fraction pod (module docstring); returns the ConfigMap prefix
        ('' without a reservation service: then only the labels are written)."""
        rs = self.reservations
        if rs is None:
            self._label_gpu_groups(ns, name, uid, groups)
            return ""
        uuids = [rs.reserve(node, g) for g in groups]
        ann = latest.metadata.annotations if latest is not None else {}
        prefix = (ann or {}).get(CONFIGMAP_ANNOTATION, "")
        if not prefix:
            owners = latest.metadata.owner_references if latest is not None else []
            prefix = configmap_prefix(name, owners[0].name if owners else "")
        self._label_gpu_groups(ns, name, uid, groups, {CONFIGMAP_ANNOTATION: prefix})
        rs.write_visibility(ns, name, uid, prefix, uuids, portion, fraction_configmap_suffix(latest))
        if not all(uuids):
            msg = (f"no GPU UUID from the reservation pod of GPU group(s) {', '.join(groups)} on node {node} "
                   f"within {rs.timeout:g}s; bound without NVIDIA_VISIBLE_DEVICES")
            log.warning("GPU reservation timed out, binding anyway", pod=f"{ns}/{name}", node=node, groups=groups)
            if self.status is not None:
                self.status.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name, "uid": uid},
                                  "GPUReservationTimeout", msg, "Warning")
        return prefix

    def _label_gpu_groups(self, ns: str, name: str, uid: str, groups: list[str],
                          annotations: dict[str, str] | None = None) -> None:
        """KAI's shared-GPU labels, so every cache rebuilt from the API charges the same groups:
        ``runai-gpu-group=<group>``, or ``runai-gpu-group/<group>`` per device (multi-fraction)."""
        ok = [g for g in groups if _LABEL_VALUE.match(g)]
        meta: dict[str, Any] = {"uid": uid}
        if annotations:
            meta["annotations"] = annotations
        if len(ok) != len(groups):
            log.warning("GPU group ids are not valid label values, not labelling", pod=f"{ns}/{name}", groups=groups)
        elif len(groups) == 1:
            meta["labels"] = {GPU_GROUP_LABEL: groups[0]}
        else:
            meta["labels"] = {f"{GPU_GROUP_LABEL}/{g}": g for g in groups}
        if len(meta) > 1:
            self.client.patch(f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": meta})

    def _evict(self, ns: str, name: str, uid: str, message: str) -> None:
        key = f"{ns}/{name}"
        base = f"/api/v1/namespaces/{ns}/pods/{name}"
        try:
            cond = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                    "message": message, "lastTransitionTime": now_rfc3339()}
            try:
                self.client.request("PATCH", base + "/status", {"status": {"conditions": [cond]}},
                                    content_type="application/strategic-merge-patch+json", attempts=self.max_attempts)
            except Fenced:
                raise
            except ApiError as exc:
                if exc.status == 404:
                    return
                log.debug("eviction condition failed", pod=key, error=str(exc))
            # retried on 429/5xx (Retry-After honoured): a repeat finds the pod gone (404) or replaced (409)
            self.client.request("DELETE", base, {"apiVersion": "v1", "kind": "DeleteOptions",
                                                 "preconditions": {"uid": uid}}, attempts=self.max_attempts)
            if self.status is not None:
                self.status.event({"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name, "uid": uid},
                                  "Evict", message)
        except ApiError as exc:
            if exc.status in (404, 409):     # gone already / replaced by a new pod of that name
                return
            log.warning("eviction failed", pod=key, error=str(exc))
            self.events.put(("Binder", EVICT_FAILED, (uid, key, "", str(exc))))

    # ------------------------------------------------------------------ results (controller thread)
    def apply_result(self, state, kind: str, payload: tuple) -> None:
        uid, key, node, reason = payload
        if kind == BIND_OK:
            self.failed_binds.pop(key, None)
            return          # keep the assumption until the watch shows spec.nodeName
        latest = self.latest_pod(key)
        if kind == BIND_FAILED:
            self.assumed_bind.pop(uid, None)
            self.failed_binds[key] = reason
            state.storage.release(uid)       # volumes its placement assumed are free again
            if state.dra is not None:
                state.dra.unassume(uid)          # the claims kai meant to write are not taken
        else:
            self.assumed_evict.pop(uid, None)
        if latest is not None and latest.metadata.uid == uid:
            state.upsert_pod(latest)           # back to what the API server says
            self.reassume(state, latest)

    def reassume(self, state, pod) -> None:
        """After a pod update from the watch: keep our not yet visible decisions applied."""
        uid = pod.metadata.uid
        got = self.assumed_bind.get(uid)
        if got is not None:
            if pod.spec.node_name or pod.metadata.deletion_timestamp:
                del self.assumed_bind[uid]
            else:
                info = state.pods.get(uid)
                if info is not None:
                    state.assume_bound(info, got[1])
        if uid in self.assumed_evict:
            info = state.pods.get(uid)
            if info is not None and not pod.metadata.deletion_timestamp:
                state.assume_evicted(info)

    def forget(self, uid: str, key: str = "") -> None:
        """The pod is gone: drop everything kept about it."""
        self.assumed_bind.pop(uid, None)
        self.assumed_evict.pop(uid, None)
        if key:
            self.failed_binds.pop(key, None)


class LiveCache:
    """Commit sink for one live cycle (see module docstring)."""

    def __init__(self, state, binder: Binder, status: StatusWriter | None = None) -> None:
        self.state = state
        self.binder = binder
        self.status = status
        self.result = CycleResult()

    def bind(self, task, node_name: str) -> None:
        if not self.binder.can_bind(task.uid):
            log.warning("not binding twice", pod=task.key, node=node_name)
            return
        groups = list(getattr(task, "gpu_groups", None) or [])
        self.state.assume_bound(task, node_name)
        groups = list(getattr(task, "gpu_groups", None) or []) or groups
        shared = getattr(task, "gpu_sharing", None) is not None
        portion = 0.0
        if shared:
            info = self.state.nodes.by_name.get(node_name)
            portion = shared_portion(task, info) if info is not None else float(task.gpu_sharing.portion or 0)
        claims = None
        if task.dra is not None and self.state.dra is not None:     # DRA: claims written before the binding
            claims = claim_writes(task.dra, self.state.dra.kai_allocated.__contains__, self.state.dra.claims.get)
        self.binder.submit_bind(task.namespace, task.name, task.uid, node_name,
                                groups if shared else None, portion, getattr(task, "volume_plan", ()), claims)
        self.result.bindings.append(Decision(task.key, node_name, groups or ()))

    def pipeline(self, task, node_name: str) -> None:
        self.result.pipelined.append(Decision(task.key, node_name))
        if self.status is not None:
            self.status.event({"kind": "Pod", "apiVersion": "v1", "namespace": task.namespace, "name": task.name,
                               "uid": task.uid}, "Pipelined",
                              f"pod {task.key} is pipelined to node {node_name}, waiting for resources to be released")

    def evict(self, task, action: str, preemptor: str = "") -> None:
        node = task.node_name
        self.state.assume_evicted(task)
        msg = f"Pod {task.key} was evicted by the {action} action" + (f" for {preemptor}" if preemptor else "")
        self.binder.submit_evict(task.namespace, task.name, task.uid, msg)
        self.result.evictions.append(Decision(task.key, node, action=action, preemptor=preemptor))
