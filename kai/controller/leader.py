"""Leader election through a ``coordination.k8s.io/v1`` Lease (client-go's algorithm), with fencing.

Lease duration 15 s, renew deadline 10 s, retry period 2 s by default. A candidate takes the
Lease when it is free or when its holder has not renewed it for a full lease duration, as
measured on this candidate's own clock (the holder's timestamps are not trusted across
machines). Writes use the Lease's resourceVersion, so two candidates can never both win. A
leader that cannot renew within the renew deadline loses leadership (``is_leader`` clears
and ``on_stopped`` runs; the controller then exits, like KAI). On a clean stop the leader
releases the Lease; followers watch the Lease object, so one takes over within moments.

Fencing: :meth:`LeaderElector.holds` says whether this replica may still write. A follower
starts its lease-duration countdown no earlier than the moment our last successful renewal
was *sent* (``renewed_at``), so no one else can hold the Lease before ``renewed_at +
lease_duration``; ``holds()`` is true only until that instant minus ``fence_margin``
(default: lease duration - renew deadline). It reads the monotonic clock only, so a paused
process (a long GC, SIGSTOP, a starved node) wakes up fenced even before the renew thread
notices it lost the Lease. The controller passes it to the API client as the write fence
(``kai.cache.kubeclient.KubeClient.fenced``) and checks it before each cycle.
"""
from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import structlog

from kai.cache.kubeclient import ApiError, KubeClient

log = structlog.get_logger("kai.leader")


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started: Callable[[], None] | None = None,
                 on_stopped: Callable[[], None] | None = None, fence_margin: float | None = None) -> None:
        self.client = client
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.fence_margin = (lease_duration - renew_deadline) if fence_margin is None else fence_margin
        self.renewed_at = float("-inf")      # monotonic time our last successful renewal was sent
        self.is_leader = threading.Event()
        self._resp = None
        self._stop = threading.Event()
        self._observed: tuple | None = None
        self._observed_at = 0.0
        self._lost = False
        self._thread: threading.Thread | None = None

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release`` (a clean shutdown) hand the Lease back at once."""
        self._stop.set()
        r = self._resp
        if r is not None:
            try:
                r.shutdown()
            except Exception:   # noqa: BLE001 - best effort
                pass
        if self._thread is not None:
            self._thread.join(self.retry_period + 5)
        if release and self.is_leader.is_set():
            self._release()
        self.is_leader.clear()
        self.renewed_at = float("-inf")

    def holds(self) -> bool:
        """True while this replica is sure no one else holds the Lease (see module docstring)."""
        return self.is_leader.is_set() and \
            time.monotonic() < self.renewed_at + self.lease_duration - self.fence_margin

    def valid_for(self) -> float:
        """Seconds :meth:`holds` stays true without another renewal (<= 0: fenced)."""
        if not self.is_leader.is_set():
            return 0.0
        return self.renewed_at + self.lease_duration - self.fence_margin - time.monotonic()

    # ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if self._try_acquire_or_renew():
                break
            self._wait_for_change(self.retry_period * random.uniform(1.0, 1.2))
        if self._stop.is_set():
            return
        log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        self.is_leader.set()
        if self.on_started:
            self.on_started()
        while not self._stop.wait(self.retry_period):
            if self._try_acquire_or_renew():
                continue
            if time.monotonic() - self.renewed_at > self.renew_deadline or self._lost:
                log.error("lost leadership", lease=f"{self.namespace}/{self.name}")
                self.is_leader.clear()
                if self.on_stopped:
                    self.on_stopped()
                return

    def _wait_for_change(self, timeout: float) -> None:
        """Follower: wait ``timeout`` seconds, or less if the Lease is released or changes hands
        (a watch on the Lease object, so a released Lease is taken over at once)."""
        rv = self._observed[2] if self._observed else ""
        if not rv:
            self._stop.wait(timeout)
            return
        t0 = time.monotonic()
        params = {"fieldSelector": f"metadata.name={self.name}"}

        def hold(r) -> None:
            self._resp = r
        try:
            for ev in self.client.watch(self.path, rv, max(1, int(round(timeout))), params=params, on_response=hold):
                if self._stop.is_set() or ev.type in ("MODIFIED", "DELETED", "ERROR"):
                    return
                if time.monotonic() - t0 > timeout:
                    return
        except ApiError:
            self._stop.wait(max(0.0, timeout - (time.monotonic() - t0)))
        finally:
            self._resp = None

    def _spec(self, old: dict | None) -> dict:
        now = _micro_now()
        same = old is not None and old.get("holderIdentity") == self.identity
        transitions = int((old or {}).get("leaseTransitions") or 0) + (0 if same or old is None else 1)
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": (old or {}).get("acquireTime") if same else now,
                "renewTime": now, "leaseTransitions": transitions}

    def _try_acquire_or_renew(self) -> bool:
        sent = time.monotonic()      # no follower can count our renewal from before this instant
        self._lost = False
        try:
            lease = self.client.get(f"{self.path}/{self.name}", attempts=1)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("reading lease failed", error=str(exc))
                return False
            try:
                self.client.post(self.path, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                             "metadata": {"name": self.name, "namespace": self.namespace},
                                             "spec": self._spec(None)})
                self.renewed_at = sent
                return True
            except ApiError as exc2:
                log.info("creating lease failed", error=str(exc2))
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        if holder and holder != self.identity:
            self._lost = self.is_leader.is_set()      # someone else holds it: we are done
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if now < self._observed_at + duration:
                return False
        lease["spec"] = self._spec(spec)
        try:
            new = self.client.put(f"{self.path}/{self.name}", lease)
        except ApiError as exc:
            log.info("updating lease failed", error=str(exc))
            return False
        ns = new.get("spec") or {}
        self._observed = (ns.get("holderIdentity"), ns.get("renewTime"), new["metadata"].get("resourceVersion"))
        self._observed_at = time.monotonic()
        self.renewed_at = sent
        self._lost = False
        return True

    def _release(self) -> None:
        try:
            lease = self.client.get(f"{self.path}/{self.name}", attempts=1)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _micro_now()})
            self.client.put(f"{self.path}/{self.name}", lease)
            log.info("released lease", lease=f"{self.namespace}/{self.name}")
        except ApiError as exc:
            log.warning("releasing lease failed", error=str(exc))
