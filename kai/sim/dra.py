"""What the cluster does with ResourceClaims between ``kai simulate`` cycles.

Live, the binder writes a claim's ``status.allocation`` and ``reservedFor`` before binding the
pod, and the controller-manager creates template claims (recording them in the pod's
``status.resourceClaimStatuses``), drops a deleted pod from ``reservedFor``, deallocates a claim
nobody reserves any more and deletes the claims generated for a deleted pod. The simulator
applies the same effects to the :class:`kai.cache.dra_store.DraStore` of its ClusterState
(:func:`claims_bound` after a binding, :func:`claims_released` after an eviction), and
:func:`claim_bindings` is what the JSON report shows per binding.
"""
from __future__ import annotations

import msgspec

from kai.api.dra import AllocationResult, ResourceClaimConsumerReference
from kai.api.k8s import Pod, PodResourceClaimStatus
from kai.cache.dra_store import DraStore
from kai.dra.allocator import DraAllocation, allocation_status

POD_CLAIM_NAME = "resource.kubernetes.io/pod-claim-name"


def claim_bindings(got: DraAllocation | None) -> list[dict]:
    """``[{"claim": "ns/name", "results": [{request, driver, pool, device}]}]`` of a binding."""
    return got.bindings() if got is not None else []


def claims_bound(store: DraStore, pod: Pod, got: DraAllocation) -> Pod:
    """The binder's writes for a bound pod (allocation and reservedFor per claim); returns the pod
    with the generated claims recorded in ``status.resourceClaimStatuses``."""
    meta = pod.metadata
    statuses = list(pod.status.resource_claim_statuses)
    known = {s.name for s in statuses}
    for c in got.claims:
        claim = store.claims.get(c.key) or c.claim
        if claim is None:
            continue
        status = claim.status
        alloc = msgspec.convert(allocation_status(c), AllocationResult) if c.new else status.allocation
        reserved = list(status.reserved_for)
        if not any(r.uid == meta.uid for r in reserved):
            reserved.append(ResourceClaimConsumerReference(resource="pods", name=meta.name, uid=meta.uid))
        claim = msgspec.structs.replace(claim, status=msgspec.structs.replace(
            status, allocation=alloc, reserved_for=reserved))
        store.apply("ResourceClaim", "MODIFIED", claim)
        entry = (claim.metadata.annotations or {}).get(POD_CLAIM_NAME)
        if entry is None or entry in known:
            continue
        statuses.append(PodResourceClaimStatus(name=entry, resource_claim_name=claim.metadata.name))
        known.add(entry)
    if len(statuses) == len(pod.status.resource_claim_statuses):
        return pod
    return msgspec.structs.replace(pod, status=msgspec.structs.replace(
        pod.status, resource_claim_statuses=statuses))


def claims_released(store: DraStore, pod: Pod) -> None:
    """The pod is gone: it leaves every claim's reservedFor; a claim nobody reserves is
    deallocated, and the claims generated for the pod are deleted."""
    uid = pod.metadata.uid
    store.unassume(uid)
    for pc in store.pod_claims(pod):
        claim = pc.claim
        if claim is None or not pc.key:
            continue
        if pc.template:
            store.apply("ResourceClaim", "DELETED", claim)
            continue
        reserved = [r for r in claim.status.reserved_for if r.uid != uid]
        if len(reserved) == len(claim.status.reserved_for):
            continue
        status = msgspec.structs.replace(claim.status, reserved_for=reserved,
                                         allocation=claim.status.allocation if reserved else None)
        store.apply("ResourceClaim", "MODIFIED", msgspec.structs.replace(claim, status=status))
