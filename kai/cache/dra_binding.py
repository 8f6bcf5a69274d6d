"""The binder's DRA step: write a pod's ResourceClaims before the pod is bound, undo on failure.

kube-scheduler's dynamicresources PreBind, per claim not yet reserved for the pod, in the
pod's claim order: read the claim; refuse if it is being deleted or was allocated elsewhere
meanwhile (the first attempt reads the informer's copy, like kube-scheduler's assume cache);
when kai allocated it, add the ``resource.kubernetes.io/delete-protection``
finalizer (a metadata update) and then write ``status.allocation`` together with the pod in
``status.reservedFor`` (a status update); a claim already allocated only gets the pod added
to ``reservedFor``. Every write carries the ``resourceVersion`` it read, so a concurrent change
is a conflict: the claim is read again and the step retried (a few times). Writes are merge
patches with that precondition rather than whole-object updates, so fields kai does not model
are never sent back.

A failure leaves nothing half done: :func:`reserve_claims` undoes the claims it already wrote
before raising, and the binder calls :func:`release_claims` when the pod binding itself fails
afterwards. Undoing removes the pod from ``reservedFor``; a claim kai allocated and nobody else
reserved meanwhile is deallocated again (allocation cleared, then the finalizer kai added
removed). Runs on the binder's worker threads (``kai.cache.binder``); never in the cycle.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from kai.api.dra import RESERVED_FOR_MAX
from kai.cache.kubeclient import ApiError, KubeClient
from kai.dra.allocator import DraAllocation, allocation_status

log = structlog.get_logger("kai.binder.dra")

FINALIZER = "resource.kubernetes.io/delete-protection"
ATTEMPTS = 5


class ClaimBindError(Exception):
    """A claim could not be written for the pod; what was written is already undone."""


@dataclass
class ClaimWrite:
    """What the binder writes to one claim (prepared on the controller thread)."""
    namespace: str
    name: str
    allocation: dict[str, Any] | None       # status.allocation kai made; None: the claim must be allocated already
    cached: Any = None                      # the informer's ResourceClaim: the first attempt reads it, no GET


@dataclass
class ClaimWritten:
    """What :func:`reserve_claims` changed on one claim (for :func:`release_claims`)."""
    write: ClaimWrite
    allocated: bool = False                 # status.allocation written by kai
    finalizer: bool = False                 # the delete-protection finalizer added by kai
    reserved: bool = False                  # the pod added to reservedFor


def claim_writes(got: DraAllocation, kai_allocated, cached=lambda key: None) -> list[ClaimWrite]:
    """The writes for a pod's claims; ``kai_allocated(key)`` says whether an allocation that is
    not new in this session is one kai committed earlier (the binder may still have to write it);
    ``cached(key)`` is the informer's claim, if any."""
    out = []
    for c in got.claims:
        ns, name = c.key.split("/", 1)
        mine = c.new or kai_allocated(c.key)
        out.append(ClaimWrite(ns, name, allocation_status(c) if mine else None, cached(c.key)))
    return out


def _path(w: ClaimWrite) -> str:
    return f"/apis/resource.k8s.io/v1/namespaces/{w.namespace}/resourceclaims/{w.name}"


def _devices(alloc: dict | None) -> set[tuple]:
    results = ((alloc or {}).get("devices") or {}).get("results") or []
    return {(r.get("request"), r.get("driver"), r.get("pool"), r.get("device")) for r in results}


def _retry_wait(attempt: int) -> None:
    time.sleep(0.05 * (2 ** attempt) * random.uniform(0.5, 1.5))


def _reserve_one(client: KubeClient, w: ClaimWrite, pod_name: str, pod_uid: str) -> ClaimWritten:
    done = ClaimWritten(w)
    key = f"{w.namespace}/{w.name}"
    path = _path(w)
    for attempt in range(ATTEMPTS):
        # the informer's copy first (a stale one only costs a conflict, and a refusal is only
        # ever decided on the API's copy), then the API's
        cached = attempt == 0 and w.cached is not None
        try:
            obj = msgspec.to_builtins(w.cached) if cached else client.get(path)
        except ApiError as exc:
            if exc.status == 404:
                raise ClaimBindError(f"resource claim {key} not found") from None
            if exc.retryable and attempt + 1 < ATTEMPTS:
                _retry_wait(attempt)
                continue
            raise ClaimBindError(f"reading resource claim {key} failed: {exc}") from None
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        reserved = list(status.get("reservedFor") or [])
        have = status.get("allocation")
        problem = ""
        if meta.get("deletionTimestamp"):
            problem = f"resource claim {key} got deleted in the meantime"
        elif have is None and w.allocation is None:
            problem = f"resource claim {key} is no longer allocated"
        elif have is not None and w.allocation is not None and _devices(have) != _devices(w.allocation):
            problem = f"resource claim {key} got allocated elsewhere in the meantime"
        elif len(reserved) >= RESERVED_FOR_MAX and not any(r.get("uid") == pod_uid for r in reserved):
            problem = f"resource claim {key} is reserved for {RESERVED_FOR_MAX} consumers already"
        if problem:
            if cached:
                continue                                     # make sure on the API's copy
            raise ClaimBindError(problem)
        write_alloc = have is None
        if any(r.get("uid") == pod_uid for r in reserved):
            if cached:
                continue
            return done                                      # an earlier attempt reserved it already
        rv = meta.get("resourceVersion", "")
        try:
            fins = list(meta.get("finalizers") or [])
            if write_alloc and FINALIZER not in fins:
                got = client.patch(path, {"metadata": {"resourceVersion": rv, "finalizers": fins + [FINALIZER]}})
                done.finalizer = True
                rv = (got.get("metadata") or {}).get("resourceVersion", rv)
            body: dict[str, Any] = {"reservedFor": reserved + [{"resource": "pods", "name": pod_name, "uid": pod_uid}]}
            if write_alloc:
                body["allocation"] = w.allocation
            client.patch(path + "/status", {"metadata": {"resourceVersion": rv}, "status": body})
        except ApiError as exc:
            if (exc.status == 409 or exc.retryable) and attempt + 1 < ATTEMPTS:
                _retry_wait(attempt)
                continue                                     # changed meanwhile: read it again
            release_claims(client, pod_uid, [done])
            raise ClaimBindError(f"writing resource claim {key} failed: {exc}") from None
        done.allocated = write_alloc
        done.reserved = True
        return done
    release_claims(client, pod_uid, [done])
    raise ClaimBindError(f"resource claim {key} kept changing; gave up after {ATTEMPTS} attempts")


def reserve_claims(client: KubeClient, pod_name: str, pod_uid: str, writes: list[ClaimWrite]) -> list[ClaimWritten]:
    """Write every claim for the pod, in order; on a failure undo the earlier ones and raise
    :class:`ClaimBindError` naming the claim."""
    done: list[ClaimWritten] = []
    for w in writes:
        try:
            done.append(_reserve_one(client, w, pod_name, pod_uid))
        except ClaimBindError:
            release_claims(client, pod_uid, done)
            raise
    return done


def release_claims(client: KubeClient, pod_uid: str, done: list[ClaimWritten]) -> None:
    """Undo :func:`reserve_claims` (newest first); best effort, logged when it cannot."""
    for d in reversed(done):
        if not (d.reserved or d.allocated or d.finalizer):
            continue
        w = d.write
        path = _path(w)
        for attempt in range(ATTEMPTS):
            try:
                obj = client.get(path)
                meta = obj.get("metadata") or {}
                status = obj.get("status") or {}
                rv = meta.get("resourceVersion", "")
                reserved = [r for r in status.get("reservedFor") or [] if r.get("uid") != pod_uid]
                dealloc = d.allocated and not reserved and status.get("allocation") is not None \
                    and _devices(status.get("allocation")) == _devices(w.allocation)
                if len(reserved) != len(status.get("reservedFor") or []) or dealloc:
                    body: dict[str, Any] = {"reservedFor": reserved or None}
                    if dealloc:
                        body["allocation"] = None
                    got = client.patch(path + "/status", {"metadata": {"resourceVersion": rv}, "status": body})
                    meta = got.get("metadata") or meta
                    status = got.get("status") or {}
                fins = list(meta.get("finalizers") or [])
                if d.finalizer and FINALIZER in fins and status.get("allocation") is None:
                    client.patch(path, {"metadata": {"resourceVersion": meta.get("resourceVersion", rv),
                                                     "finalizers": [f for f in fins if f != FINALIZER] or None}})
                break
            except ApiError as exc:
                if exc.status == 404:
                    break
                if (exc.status == 409 or exc.retryable) and attempt + 1 < ATTEMPTS:
                    _retry_wait(attempt)
                    continue
                log.warning("undoing a resource claim write failed", claim=f"{w.namespace}/{w.name}",
                            pod_uid=pod_uid, error=str(exc))
                break
