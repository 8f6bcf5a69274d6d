"""proportion's reclaim rules: KAI's CanReclaimResources gate and Reclaimable validator.

Called from the proportion plugin's ``on_session_open`` (after it published ``ssn.shares``)
as ``register_reclaim_hooks(ssn, arguments, quota_vector)``. Reads, per queue name, numpy
``[gpu devices, cpu millicores, memory bytes]`` vectors from ``ssn.shares``
(:class:`kai.framework.session.QueueShares`):

- ``allocated`` -- allocation of the queue and its descendants, kept in sync with virtual
  evictions/allocations by proportion's event handlers;
- ``fair_share`` -- the computed fair share (when absent for a queue: its deserved quota, so
  the rules still mean "stay within what you are owed");
- ``allocated_nonpreemptible`` -- the non-preemptible part of the allocation;
- ``QueueInfo.deserved`` / ``QueueInfo.limit`` (-1 = unlimited).

Hooks (signatures the reclaim action relies on)::

    can_reclaim(ssn, job, tasks) -> bool
        The reclaimer's leaf queue stays within its fair share after adding ``tasks``
        (allocated + request <= fairShare in every resource); a non-preemptible job must
        also keep the queue's non-preemptible allocation within deserved.

    reclaimable(ssn, reclaimer, victims: dict[job_key, list[PodInfo]]) -> bool
        For every victim job (one chunk each, in the order given), the reclaimer's and the
        victim's queue paths are *leveled* to the two siblings under their lowest common
        ancestor. Before subtracting the chunk, the leveled victim must be over its
        allocatable share (MaintainFairShare) or the leveled reclaimer must stay within
        deserved while the victim is over deserved (GuaranteeDeservedQuota). Then the
        saturation boundary: if the leveled reclaimer ends above its fair share, its
        saturation times ``relcaimerSaturationMultiplier`` (sic, KAI's argument name;
        values < 1 are clamped to 1) must stay below the sibling's remaining saturation.

As in KAI's reclaimable.go, a victim job's pods above its gang minimum are separate
chunks and its core pods one lump; the saturation boundary (and, for a non-preemptible
reclaimer, the deserved bound) is checked at every level of the reclaimer's path against
each sibling the reclaim touched.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from kai.api import constants as C
from kai.framework.plugin import label_blind

_EPS = 1e-9
_INF = float("inf")


def _vec(v) -> np.ndarray:
    return np.array([_INF if x == -1 else float(x) for x in v])


def _ratio(alloc: float, share: float) -> float:
    """KAI's saturation ratio: 0 for an unlimited share, infinite for a zero share in use."""
    if share == _INF:
        return 0.0
    if share <= 0:
        return _INF if alloc > _EPS else 0.0
    return alloc / share


def register_reclaim_hooks(ssn, arguments: dict, quota_vector: Callable[[object], np.ndarray],
                           quota_of: Callable[[object], tuple] | None = None) -> None:
    """Register ``can_reclaim`` and ``reclaimable`` (see the module docstring); ``arguments``
    are proportion's plugin arguments, ``quota_vector(task)`` what a task counts for in queue
    quota (proportion's: MIG instances as GPUs, gpu-memory as the GPUs it takes);
    ``quota_of(task)``, when given, the same figures as a float tuple (memoized by the plugin)."""
    try:
        mult = float(arguments.get("relcaimerSaturationMultiplier", 1.0))
    except (TypeError, ValueError):
        mult = 1.0
    mult = max(mult, 1.0) if np.isfinite(mult) else 1.0
    tree = ssn.queues
    shares = ssn.shares
    if shares is None:
        raise RuntimeError("proportion's reclaim rules need ssn.shares (register after publishing it)")
    last_request: dict[str, np.ndarray] = {}

    _quota_vector = quota_vector

    def allocated(name: str) -> np.ndarray:
        a = shares.allocated.get(name)
        return np.zeros(3) if a is None else np.asarray(a, dtype=float)

    def deserved(name: str) -> np.ndarray:
        return _vec(tree.get(name).deserved)

    def fair_share(name: str) -> np.ndarray:
        f = shares.fair_share.get(name)
        if f is None:
            return deserved(name)
        return np.array([_INF if x == -1 else x for x in np.asarray(f, dtype=float).tolist()])

    def allocatable_share(name: str) -> np.ndarray:
        q = tree.get(name)
        lim = _vec(q.limit)
        d = np.array(q.deserved, dtype=float)
        share = np.where(d == -1, lim, np.maximum(d, fair_share(name)))
        return np.minimum(lim, share)

    def request_of(job, tasks=None) -> np.ndarray:
        if tasks is None:
            got = last_request.get(job.key)
            if got is not None:
                return np.asarray(got, dtype=float)     # (can_reclaim keeps a float tuple)
            tasks = job.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
        req = np.zeros(3)
        for t in tasks:
            req += _quota_vector(t)
        last_request[job.key] = req
        return req

    fair_floats: dict[str, list[float]] = {}       # fixed for the session

    def _fair_floats(name: str) -> list[float]:
        got = fair_floats.get(name)
        if got is None:
            got = fair_floats[name] = fair_share(name).tolist()
        return got

    def _request_floats(job, tasks) -> tuple[float, float, float]:
        """request_of's sum as floats (remembered for ``reclaimable`` as request_of does)."""
        if quota_of is None:
            return tuple(request_of(job, tasks).tolist())
        g = c = m = 0.0
        for t in tasks:
            v = quota_of(t)
            g += v[0]
            c += v[1]
            m += v[2]
        req = (g, c, m)
        last_request[job.key] = req
        return req

    @label_blind                # queues' figures and the tasks' requests
    def can_reclaim(ssn_, job, tasks) -> bool:
        # scalar arithmetic: asked once per pending job in the walk, tens of thousands of
        # times a cycle when queues are held back, where numpy's per-call cost dominates
        name = job.queue
        if name not in tree:
            return False
        req = _request_floats(job, tasks)
        a = shares.allocated.get(name)
        a = a.tolist() if a is not None else (0.0, 0.0, 0.0)
        f = _fair_floats(name)
        for i in range(3):
            if not a[i] + req[i] <= f[i] + _EPS:
                return False
        if not job.preemptible:
            anp = shares.allocated_nonpreemptible.get(name)
            if anp is not None:
                anp = anp.tolist()
                des = tree.get(name).deserved
                for i in range(3):
                    d = _INF if des[i] == -1 else float(des[i])
                    if not anp[i] + req[i] <= d + _EPS:
                        return False
        return True

    level = tree.leveled

    def victim_chunks(vjob, tasks) -> list[np.ndarray]:
        """Elastic pods (above minMember) one by one, then the core pods as one lump."""
        active = vjob.count(C.ACTIVE_ALLOCATED) + len(tasks)      # before these evictions
        extra = max(active - vjob.min_member, 0)
        vecs = [_quota_vector(t) for t in tasks]
        singles = vecs[:extra]
        rest = vecs[extra:]
        chunks = list(singles)
        if rest:
            chunks.append(sum(rest, np.zeros(3)))
        return chunks

    @label_blind                # queues' figures after the victims' eviction
    def reclaimable(ssn_, reclaimer, victims) -> bool:
        if reclaimer.queue not in tree:
            return False
        req = request_of(reclaimer)
        # allocations already exclude every victim; add back what has not been "taken" yet
        pending_back: dict[str, np.ndarray] = {}
        chunks = []
        touched: set[str] = set()
        for key, tasks in victims.items():
            vjob = ssn.jobs.get(key)
            if vjob is None or vjob.queue not in tree:
                return False
            for amount in victim_chunks(vjob, tasks):
                chunks.append((vjob.queue, amount))
                for q in tree.ancestors(vjob.queue):
                    pending_back[q.name] = pending_back.get(q.name, np.zeros(3)) + amount
                    touched.add(q.name)
        for vqueue, amount in chunks:
            pair = level(reclaimer.queue, vqueue)
            if pair is None:
                return False
            r_name, v_name = pair
            v_before = allocated(v_name) + pending_back.get(v_name, 0)
            maintain = not (v_before <= allocatable_share(v_name) + _EPS).all()
            r_after = allocated(r_name) + req
            guarantee = (r_after <= deserved(r_name) + _EPS).all() and \
                (v_before > deserved(v_name) + _EPS).any()
            if not (maintain or guarantee):
                return False
            for q in tree.ancestors(vqueue):
                pending_back[q.name] = pending_back[q.name] - amount
        # boundaries: at every level of the reclaimer's path, against each touched sibling
        involved = np.flatnonzero(req > 0)
        anp_all = shares.allocated_nonpreemptible
        for r_q in tree.ancestors(reclaimer.queue):
            r_after = allocated(r_q.name) + req
            if not reclaimer.preemptible:
                anp = anp_all.get(r_q.name)
                if anp is not None and not (np.asarray(anp) + req <= deserved(r_q.name) + _EPS).all():
                    return False
            parent = tree.get(r_q.parent) if r_q.parent else None
            siblings = parent.children if parent is not None else [q.name for q in tree.roots()]
            fr = fair_share(r_q.name)
            for sib in siblings:
                if sib == r_q.name or sib not in touched:
                    continue
                fs = fair_share(sib)
                s_after = allocated(sib)
                for i in involved:
                    if fr[i] == _INF and fs[i] == _INF:
                        continue
                    ratio_r = _ratio(r_after[i], fr[i])
                    ratio_s = _ratio(s_after[i], fs[i])
                    if ratio_r > 1 + _EPS and fs[i] > 0 and ratio_r * mult >= ratio_s:
                        return False
        return True

    ssn.can_reclaim_fns.append(can_reclaim)
    ssn.reclaim_scenario_validator_fns.append(reclaimable)


__all__ = ["register_reclaim_hooks"]
