"""Scheduling signatures: skip a job no easier than one that already failed (KAI's
``--use-scheduling-signatures``, on by default).

Reclaim and preempt keep, per queue, and consolidation for the whole action, the smallest
job that failed for each *scheduling signature* -- a hash of everything apart from resource
amounts that decides where a job's pods may go. A later job with the same signature is
skipped unless it is easier than that representative, compared as KAI compares them: the
pending pods' request vectors, sorted; fewer pending pods than the representative counts as
easier, and so does a first differing pod that asks for less of every resource.

The signature is built from each pod's nodeSelector, affinity (node and pod), tolerations,
priority class and priority, topology spread constraints, host ports (KAI's fields), plus
what kai models beyond them: GPU-sharing annotations, volumes and resource claims (with the
namespace they are resolved in), the job's priority and preemptibility, and every
SubGroup's topology constraint. The actions call :class:`MinimalJobRepresentatives`.
"""
from __future__ import annotations

import hashlib

import msgspec
import numpy as np

from kai.api import constants as C

_enc = msgspec.json.Encoder()


def pod_signature(task) -> bytes:
    """The pod's scheduling-constraint signature (bytes of a sha1)."""
    spec = task.pod.spec
    ports = sorted(p.host_port for c in (*spec.containers, *spec.init_containers) for p in c.ports if p.host_port)
    sharing = task.gpu_sharing
    storage = (task.pod.metadata.namespace, spec.volumes, spec.resource_claims) \
        if spec.volumes or spec.resource_claims else None
    doc = (sorted(spec.node_selector.items()), spec.affinity, spec.tolerations, spec.priority_class_name,
           spec.priority, spec.topology_spread_constraints, ports,
           None if sharing is None else repr(sharing), storage)
    return hashlib.sha1(_enc.encode(doc)).digest()


def job_signature(job) -> bytes:
    """The job's signature: its pods' signatures per PodSet, each with its topology constraints."""
    h = hashlib.sha1()
    h.update(_enc.encode((job.priority, job.preemptible)))
    for name in sorted(job.podsets):
        ps = job.podsets[name]
        node = job.subgroup_node(ps)
        while node is not None:
            h.update(_enc.encode(node.topology_constraint))
            node = node.parent
        for sig in sorted(pod_signature(t) for t in ps.tasks):
            h.update(sig)
    return h.digest()


def _pending_requests(job) -> list[np.ndarray]:
    reqs = [t.req for t in job.tasks.values() if t.status == C.PodStatus.PENDING]
    width = max((r.shape[0] for r in reqs), default=0)
    padded = [_pad(r, np.zeros(width))[0] if r.shape[0] < width else r for r in reqs]
    return sorted(padded, key=lambda r: tuple(r))


def _pad(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both vectors zero-padded to the longer one's width (the same arrays when equal)."""
    la, lb = a.shape[0], b.shape[0]
    if la == lb:
        return a, b
    if la < lb:
        return np.concatenate((a, np.zeros(lb - la, dtype=a.dtype))), b
    return a, np.concatenate((b, np.zeros(la - lb, dtype=b.dtype)))


def _le(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = _pad(a, b)
    return bool((a <= b).all())


def easier_than(job, rep) -> bool:
    """KAI's comparison: is ``job`` possibly easier to place than the failed ``rep``?"""
    mine, theirs = _pending_requests(job), _pending_requests(rep)
    if not mine or not theirs:
        return False
    if len(theirs) > len(mine):
        return True
    for i, r in enumerate(mine):
        if i >= len(theirs):
            return False
        if _le(r, theirs[i]):
            if _le(theirs[i], r):
                continue
            return True
    return False


def footprint_smaller(job, rep) -> bool:
    """Every pending pod of ``job`` (sorted) asks at most what the same-rank pod of ``rep`` asks."""
    mine, theirs = _pending_requests(job), _pending_requests(rep)
    if not mine or not theirs or len(mine) > len(theirs):
        return False
    return all(_le(a, b) for a, b in zip(mine, theirs))


class MinimalJobRepresentatives:
    """Signature -> the smallest job that failed with it (KAI's MinimalJobRepresentatives)."""

    def __init__(self) -> None:
        self.reps: dict[bytes, object] = {}
        self._sigs: dict[str, bytes] = {}

    def _sig(self, job) -> bytes:
        sig = self._sigs.get(job.key)
        if sig is None:
            sig = self._sigs[job.key] = job_signature(job)
        return sig

    def skip(self, job):
        """The failed representative that makes trying ``job`` pointless, or None."""
        rep = self.reps.get(self._sig(job))
        if rep is None or easier_than(job, rep):
            return None
        return rep

    def failed(self, job) -> None:
        sig = self._sig(job)
        cur = self.reps.get(sig)
        if cur is None or footprint_smaller(job, cur):
            self.reps[sig] = job


__all__ = ["MinimalJobRepresentatives", "easier_than", "footprint_smaller", "job_signature", "pod_signature"]
