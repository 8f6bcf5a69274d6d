"""dynamicresources: pods' ResourceClaims filtered, allocated and freed in the session (KAI's plugin).

At session open the plugin forks the cluster's DRA allocator (``ClusterState.dra``, a
:class:`kai.cache.dra_store.DraStore`) for the session and registers
:class:`ClaimsPredicate`, a per-task :class:`kai.framework.predicate.NodePredicate`:

- ``pre_filter``: the pod's claims cannot be used at all -- a claim or template is missing, a
  template's claim is not created yet (the controller-manager creates it; ``kai simulate``
  makes it itself), a claim is being deleted or reserved for 256 pods, a request names a
  missing DeviceClass or a field kai does not implement, or no device matches a request;
  the reason names the claim and the request;
- ``mask``: the nodes where every claim of the pod can be allocated now (one kernel pass over
  the inventory, confirmed by the exact search where requests compete; see docs/dra.md);
- ``explain``: for a pod that fits nowhere, which request lacks devices and how many are in use.

The device pick happens in the allocate handler, after the Statement placed the task on a
node (pipelined tasks too): the devices are marked in the session allocator and the
:class:`kai.dra.allocator.DraAllocation` is put on ``PodInfo.dra`` for the binder, which
writes each claim's ``status.allocation`` and ``reservedFor`` before binding the pod. The
deallocate handler undoes it on every rollback, so a gang's claims are allocated together or
not at all. Evicting a running pod (reclaim, preempt, consolidation) frees its claims'
devices once every pod using a claim is evicted in the session; undoing the eviction puts them
back. Should the pick fail on the node the mask offered (it should not: one task is placed at
a time, on an exact mask), the handler refuses the placement and the Statement undoes it
(``Session.fire_allocate``).

Arguments: ``gpuDeviceClasses`` -- which DeviceClasses count as GPUs in queue quota
(:mod:`kai.dra.quota`; read by the DraStore when the session opens).
"""
from __future__ import annotations

import numpy as np

from kai.api import constants as C
from kai.cache.dra_store import DraStore
from kai.dra.allocator import DraAllocation, DraRequest
from kai.framework.plugin import Plugin, alike_stable, label_blind, register_plugin
from kai.framework.predicate import PIPELINE_ONLY, NodePredicate

S = C.PodStatus
PLACED = S.ALLOCATED | S.PIPELINED


class ClaimsPredicate(NodePredicate):
    """The DRA filter and event handlers of one session (see the module docstring)."""

    name = "DynamicResources"
    per_task = True        # every placement takes devices: the next task needs a fresh mask
    alike_stable = True    # applies: the pod's resourceClaims
    label_blind = True

    def __init__(self, ssn, store: DraStore) -> None:
        self.ssn = ssn
        self.store = store
        self.table = ssn.state.nodes
        self.al = store.session_allocator(self.table)
        self._reqs: dict[str, tuple[DraRequest, tuple, str]] = {}
        self.placed: dict[str, tuple[str, object]] = {}        # see "event handlers" below
        self.undone: dict[str, DraAllocation] = {}
        self.evictions: dict[str, list[tuple[tuple | None, list]]] = {}
        self.evicted: set[str] = set()                          # pods evicted in the session
        self.users: dict[str, set[str]] = {}
        self.refused: dict[str, str] = {}
        # claims whose every consumer is being deleted (or gone) hold their devices only until
        # the controller-manager deallocates them: releasing, as devices of evicted pods
        for key, c in list(self.al.allocated.items()):
            if c.reserved_for and all(self._leaving(u) for u in c.reserved_for):
                self.al.free(key)

    def _leaving(self, uid: str) -> bool:
        p = self.ssn.state.pods.get(uid)
        return p is None or p.deleting or p.status in (S.RELEASING, S.SUCCEEDED, S.FAILED)

    # ------------------------------------------------------------------ compiled requests
    def request(self, task) -> DraRequest:
        """The pod's claims compiled for this session; compiled again when a claim it uses was
        allocated or freed since (a shared claim placed by another pod)."""
        got = self._reqs.get(task.uid)
        if got is not None and self._same(got[0], got[1]):
            return got[0]
        pcs = self.store.pod_claims(task.pod, generate=self.store.generate)
        req = self.al.prepare(pcs, pod_uid=task.uid)
        self._reqs[task.uid] = (req, self._snapshot(req), self._static_reason(req))
        return req

    def _snapshot(self, req: DraRequest) -> tuple:
        alloc = self.al.allocated
        return tuple(alloc.get(pc.key) for pc in req.pod_claims)

    def _same(self, req: DraRequest, snap: tuple) -> bool:
        alloc = self.al.allocated
        return all(alloc.get(pc.key) is s for pc, s in zip(req.pod_claims, snap))

    @staticmethod
    def _static_reason(req: DraRequest) -> str:
        """Why no node can ever take the pod, whatever is in use: the allocator's reasons, or a
        request no device matches (named with its class and what removed the devices)."""
        if req.reasons:
            return "; ".join(dict.fromkeys(req.reasons))
        parts = []
        for q, (ci, rname) in enumerate(req.req_names):
            alts = req.alts[int(req.req_alt_start[q]):int(req.req_alt_start[q + 1])]
            if alts and not any(a.match.any() for a in alts):
                a = alts[0]
                why = f" ({a.why})" if a.why else ""
                parts.append(f"resource claim {req.pending[ci].key}, request {rname}: no device of class "
                             f"{a.class_name} matches{why}")
        return "; ".join(parts)

    # ------------------------------------------------------------------ NodePredicate
    def applies(self, task) -> bool:
        return bool(task.pod.spec.resource_claims)

    def pre_filter(self, task, job) -> str | None:
        self.request(task)
        why = self._reqs[task.uid][2]
        return f"pod {task.key}: {why}" if why else None

    def _base(self, task) -> np.ndarray:
        m = self.table.static_mask(task.pod, task.signature)
        ns = self.ssn.node_set
        return m if ns is None else (m & ns)

    def mask(self, task, job) -> np.ndarray:
        return self.al.feasible(self.request(task), self._base(task))

    def explain(self, task, job, among: np.ndarray) -> list[tuple[np.ndarray, str]]:
        req = self.request(task)
        refused = self.refused.get(task.uid)
        if refused:
            return [(np.asarray(among, dtype=bool), f"node(s) where allocating the pod's resource claims "
                                                    f"failed: {refused}")]
        ok = self.al.feasible(req, self._base(task)).astype(bool)
        why = self.al.explain(req, np.asarray(among, dtype=bool) & self._base(task).astype(bool))
        return [(~ok, "node(s) cannot allocate the pod's resource claims"
                 + (f" ({why})" if why else ""))]

    # ------------------------------------------------------------------ event handlers
    # Per task: ``placed`` -- what its current placement holds: ("new", DraAllocation) for devices
    # picked in this session, ("back", claims) for an evicted pod put back where it ran;
    # ``undone`` -- its last placement undone (a rollback, or the solver's temporary undo), put
    # back on the same devices when the task is placed on that node again; ``evictions`` -- a
    # stack (the Statement undoes LIFO) of (placement record, claims freed) per eviction.
    # ``users`` -- claim key -> tasks whose session placement uses it, so a claim is freed only
    # when every pod using it (these and its reservedFor) is evicted or leaving.
    def on_allocate(self, task) -> str | None:
        if not task.pod.spec.resource_claims:
            return None
        uid = task.uid
        if not task.status & PLACED:
            # an eviction undone: the pod keeps what it had
            self.evicted.discard(uid)
            stack = self.evictions.get(uid)
            if stack:
                rec, freed = stack.pop()
                self.al.restore(freed, back=True)
                if rec is not None:
                    self.placed[uid] = rec
                    if rec[0] == "new":
                        self._use(uid, rec[1])
                        task.dra = rec[1]
            return None
        node = self.table.by_name[task.node_name].idx
        prev = self.undone.get(uid)
        if prev is not None and prev.node == node and self._restore(prev):
            del self.undone[uid]                # placed again where an undone placement was: same devices
            self.placed[uid] = ("new", prev)
            self._use(uid, prev)
            task.dra = prev
            return PIPELINE_ONLY if self._waiting(prev) else None
        stack = self.evictions.get(uid)
        if stack and stack[-1][0] is None and all(c.nodes[node] for c in stack[-1][1]) \
                and self.al.restore(stack[-1][1], back=True):
            self.placed[uid] = ("back", stack.pop()[1])      # an evicted pod placed back where it ran
            self.evicted.discard(uid)
            return None
        got, waiting = self.al.allocate_waiting(self.request(task), node, pod_uid=uid)
        if got is None:
            why = f"the devices of the pod's resource claims could not be allocated on node {task.node_name}"
            self.refused[uid] = why
            return why
        self.refused.pop(uid, None)
        self.placed[uid] = ("new", got)
        self._use(uid, got)
        task.dra = got
        return PIPELINE_ONLY if waiting or self._waiting(got) else None

    def on_deallocate(self, task) -> None:
        if not task.pod.spec.resource_claims:
            return
        uid = task.uid
        rec = self.placed.pop(uid, None)
        if task.status & PLACED:
            # a placement undone (a placement refused by on_allocate holds nothing)
            if rec is None:
                return
            kind, what = rec
            if kind == "new":
                self._unuse(uid, what)
                self.al.release([c for c in what.own if not self.users.get(c.key)])
                self.undone[uid] = what
                task.dra = None
            else:                               # an un-evicted pod leaves again
                for c in what:
                    self.al.free(c.key)
                self.evicted.add(uid)
                self.evictions.setdefault(uid, []).append((None, what))
            return
        # an eviction (reclaim, preempt, consolidation): free each claim of the pod that no
        # other remaining pod uses; its devices are releasing until the pod is gone
        if rec is None and not task.node_name:
            return
        self.evicted.add(uid)
        if rec is not None and rec[0] == "new":
            self._unuse(uid, rec[1])
            keys = [c.key for c in rec[1].claims]
        elif rec is not None:
            keys = [c.key for c in rec[1]]
        else:
            keys = [pc.key for pc in self.store.pod_claims(task.pod) if pc.key]
        freed = []
        for key in dict.fromkeys(keys):
            c = self.al.allocated.get(key)
            if c is not None and all(u == uid or u in self.evicted or self._leaving(u)
                                     for u in set(c.reserved_for) | self.users.get(key, set())):
                self.al.free(key)
                freed.append(c)
        self.evictions.setdefault(uid, []).append((rec, freed))

    def _use(self, uid: str, got: DraAllocation) -> None:
        for c in got.claims:
            self.users.setdefault(c.key, set()).add(uid)

    def _unuse(self, uid: str, got: DraAllocation) -> None:
        for c in got.claims:
            users = self.users.get(c.key)
            if users is not None:
                users.discard(uid)

    def _restore(self, prev: DraAllocation) -> bool:
        """Put an undone placement back on its devices, if every claim it used is as it was."""
        own = {id(c) for c in prev.own}
        alloc = self.al.allocated
        if any(id(c) not in own and alloc.get(c.key) is not c for c in prev.claims):
            return False
        return self.al.restore([c for c in prev.own if alloc.get(c.key) is not c])

    def _waiting(self, got: DraAllocation) -> bool:
        """Does the placement need devices evicted pods still hold (its own picks, or a shared
        claim another placement allocated on them)? Then it may only be pipelined."""
        rel = self.al.releasing
        return any(rel[r] for c in got.claims for r in c.rows if r >= 0)


@label_blind
@alike_stable
def unconfigured_guard(task, job) -> str | None:
    """Registered by ``predicates`` when the config leaves ``dynamicresources`` out: a pod with
    resource claims waits (fail closed) instead of being placed without its devices."""
    if task.pod.spec.resource_claims:
        return (f"pod {task.key} has resourceClaims but the scheduler config does not enable the "
                "dynamicresources plugin")
    return None


@register_plugin
class DynamicResources(Plugin):
    name = "dynamicresources"

    def on_session_open(self, ssn) -> None:
        state = ssn.state
        if not state.claim_pods:
            return                              # no pod in the cluster uses a claim
        store = state.dra if state.dra is not None else DraStore()
        pred = ClaimsPredicate(ssn, store)
        ssn.node_predicates.append(pred)
        ssn.allocate_handlers.append(pred.on_allocate)
        ssn.deallocate_handlers.append(pred.on_deallocate)
