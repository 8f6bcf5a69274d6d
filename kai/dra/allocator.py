"""Structured-parameters allocation of a pod's ResourceClaims over an :class:`Inventory`.

The scheduler core calls, per session and per pod (see docs/dra.md):

1. :func:`resolve_pod_claims` -- the pod's ``spec.resourceClaims`` as claim objects (a
   template entry reads the claim named in ``status.resourceClaimStatuses``; ``kai simulate``
   generates the claim kai would create);
2. :meth:`DraAllocator.prepare` -- compile them once: per request alternative a candidate
   mask over devices (DeviceClass and request selectors, pool state, taints), plus the
   arrays of the :mod:`kai._fast.dra` kernels. Claims already allocated (in the API or earlier
   in this session) become a node mask: the pod goes where their devices are;
3. :meth:`DraAllocator.feasible` -- uint8[N]: nodes where all claims can be satisfied. One
   kernel pass over the devices; when requests compete for devices or constraints tie them,
   the candidate nodes are confirmed by the exact search;
4. :meth:`DraAllocator.allocate` -- pick devices on the chosen node; marks them in use and
   returns a :class:`DraAllocation` (per claim: results ``{request, driver, pool, device}``,
   config, node selector) that is also the undo token for :meth:`DraAllocator.undo`.
   :meth:`checkpoint`/:meth:`rollback` undo everything after a mark (a Statement's
   rollback; a gang's claims are allocated together or not at all via
   :meth:`allocate_gang`);
5. :meth:`DraAllocator.explain` -- why no node fits, naming the claim, request and field.

Semantics follow kube-scheduler's structured allocator (k8s.io/dynamic-resource-allocation
/structured): first solution in request / priority / inventory order, a device allocated to at
most one claim unless the request has admin access, at most 32 results per claim,
``allocationMode: All`` takes every matching device reachable from the node (all must be free,
and every pool the node reaches must be complete and valid). Fields kai does not implement
fail closed: the claim is unsatisfiable with a reason naming the field
(``distinctAttribute``, ``capacity.requests``), and devices using unsupported fields are never
picked (see :mod:`kai.dra.inventory`). A CEL runtime error on a device makes that device
unselectable; the error is named if the request then cannot be satisfied (kube-scheduler stops
at the first erroring device it visits instead).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec
import numpy as np

from kai.api.dra import (ALL, EXACT_COUNT, RESERVED_FOR_MAX, RESULTS_MAX, DeviceClass, DeviceConstraint,
                         DeviceToleration, ResourceClaim, ResourceClaimTemplate)
from kai.api.k8s import NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectMeta, Pod
from kai.dra.inventory import Inventory, node_selector_mask, tolerates
from kai.dra.quota import request_classes
from kai.dra.selector import E, T, compile_selector

try:
    from kai._fast.dra import Search, node_mask as _node_mask
except ImportError:   # pragma: no cover - source checkout without built kernels
    from kai._fast.reference.dra import Search, node_mask as _node_mask   # type: ignore[assignment]

SEARCH_BUDGET = 200_000          # device trials per node before the search gives up (fails closed)
MAX_CLAIMS = 64                  # claims allocated in one decision (the kernel's bit set)


# --- resolving a pod's claims ------------------------------------------------------------

@dataclass
class PodClaim:
    """One ``spec.resourceClaims`` entry of a pod, resolved to a claim object."""
    name: str                                 # the pod's entry name
    key: str = ""                             # "namespace/claim-name"
    claim: ResourceClaim | None = None
    template: str = ""                        # template name, for claims generated from one
    generated: bool = False                   # kai made it from the template (kai simulate)
    problem: str = ""                         # why the pod cannot use it yet


def generated_claim(pod: Pod, entry_name: str, template: ResourceClaimTemplate) -> ResourceClaim:
    """The claim the resourceclaim controller would create for a pod's template entry."""
    ns = pod.metadata.namespace or "default"
    tm = template.spec.metadata
    meta = ObjectMeta(name=f"{pod.metadata.name}-{entry_name}", namespace=ns,
                      uid=f"uid-claim-{ns}-{pod.metadata.name}-{entry_name}",
                      labels=dict(tm.labels), annotations={**tm.annotations,
                                                           "resource.kubernetes.io/pod-claim-name": entry_name})
    return ResourceClaim(metadata=meta, spec=msgspec.structs.replace(template.spec.spec))


def resolve_pod_claims(pod: Pod, claims: dict[str, ResourceClaim], templates: dict[str, ResourceClaimTemplate],
                       generate: bool = False) -> list[PodClaim]:
    """The pod's claims; ``claims``/``templates`` are keyed ``namespace/name``. With ``generate``
    a template entry without a claim yet gets the claim kai would create (``kai simulate``)."""
    ns = pod.metadata.namespace or "default"
    statuses = {s.name: s for s in pod.status.resource_claim_statuses}
    out: list[PodClaim] = []
    for entry in pod.spec.resource_claims:
        if entry.resource_claim_name:
            key = f"{ns}/{entry.resource_claim_name}"
            c = claims.get(key)
            out.append(PodClaim(entry.name, key, c, problem="" if c is not None else
                                f"resource claim {key} not found"))
            continue
        if not entry.resource_claim_template_name:
            out.append(PodClaim(entry.name, problem=f"spec.resourceClaims[{entry.name}]: neither "
                                "resourceClaimName nor resourceClaimTemplateName is set"))
            continue
        tname = entry.resource_claim_template_name
        st = statuses.get(entry.name)
        if st is not None and st.resource_claim_name is None:
            continue                           # the controller decided no claim is needed
        if st is not None and st.resource_claim_name:
            key = f"{ns}/{st.resource_claim_name}"
            c = claims.get(key)
            if c is not None:
                out.append(PodClaim(entry.name, key, c, template=tname))
                continue
        tmpl = templates.get(f"{ns}/{tname}")
        if generate and tmpl is not None:
            c = generated_claim(pod, entry.name, tmpl)
            out.append(PodClaim(entry.name, f"{ns}/{c.metadata.name}", c, template=tname, generated=True))
        elif tmpl is None:
            out.append(PodClaim(entry.name, template=tname,
                                problem=f"resource claim template {ns}/{tname} not found"))
        else:
            out.append(PodClaim(entry.name, template=tname,
                                problem=f"waiting for the resource claim of entry {entry.name} "
                                        f"(template {tname}) to be created"))
    return out


# --- results --------------------------------------------------------------------------------

@dataclass
class ClaimAllocation:
    """A claim's devices, as ``status.allocation`` records them, plus where they are reachable."""
    key: str
    results: list[dict[str, Any]]             # [{request, driver, pool, device[, adminAccess]}]
    rows: list[int]                           # inventory rows (-1: device not in the inventory)
    admin: list[bool]
    nodes: np.ndarray                         # bool[N]: nodes that reach every device
    config: list[dict[str, Any]] = field(default_factory=list)
    node_selector: NodeSelector | None = None
    classes: dict[str, int] = field(default_factory=dict)   # device class -> devices (for quota)
    reserved_for: list[str] = field(default_factory=list)   # consumer uids
    new: bool = False                         # allocated by kai in this session
    claim: ResourceClaim | None = None        # the claim object (new allocations: for the binder)


@dataclass
class DraAllocation:
    """What :meth:`DraAllocator.allocate` did for one pod; also its undo token."""
    node: int
    claims: list[ClaimAllocation]             # every claim of the pod (new and already allocated)
    mark: int = -1                            # journal position before it
    own: list[ClaimAllocation] = field(default_factory=list)   # the claims this call allocated
    inv: Any = None                           # the Inventory its rows index

    def bindings(self) -> list[dict[str, Any]]:
        """``[{"claim": "ns/name", "results": [...]}]`` as kai simulate prints them."""
        return [{"claim": c.key, "results": c.results} for c in self.claims]


def allocation_status(c: ClaimAllocation) -> dict[str, Any]:
    """A claim's ``status.allocation`` in API shape (what the binder writes)."""
    out: dict[str, Any] = {"devices": {"results": [dict(r) for r in c.results],
                                       **({"config": c.config} if c.config else {})}}
    if c.node_selector is not None:
        out["nodeSelector"] = msgspec.to_builtins(c.node_selector)
    return out


# --- compiled requests ------------------------------------------------------------------------

@dataclass
class _Alt:
    name: str                                 # "request" or "request/subrequest"
    request: str
    class_name: str
    count: int                                # 0 = All
    admin: bool
    match: np.ndarray                         # bool[D]
    why: str = ""                             # when match is empty: what removed the devices


@dataclass
class DraRequest:
    """A pod's claims compiled against one inventory (reusable for the whole session)."""
    pod_claims: list[PodClaim]
    reasons: list[str]                        # unsatisfiable whatever the node
    pending: list[PodClaim]                   # claims to allocate
    alts: list[_Alt]
    req_alt_start: np.ndarray                 # int32[Q+1]
    req_claim: np.ndarray                     # int32[Q]
    req_names: list[tuple[int, str]]          # (claim index, request name) per request
    constraints: list[tuple[int, DeviceConstraint]]
    cand: np.ndarray                          # uint8[A, D]
    alt_count: np.ndarray                     # int32[A]
    alt_admin: np.ndarray                     # uint8[A]
    con_attr: np.ndarray                      # int32[K, D]
    con_claim: np.ndarray                     # int32[K]
    con_alt: np.ndarray                       # uint8[K, A]
    exact_by_counts: bool
    allocated_nodes: np.ndarray               # bool[N]: where the already allocated claims are
    search: Any = None
    core: Any = None                          # the cached compile it shares arrays and search with
    alt_claim: list[int] = field(default_factory=list)   # claim index of each alternative

    @property
    def has_claims(self) -> bool:
        return bool(self.pod_claims)


def _spec_key(claim: ResourceClaim) -> bytes:
    return msgspec.json.encode(claim.spec)


class DraAllocator:
    """Device use over one inventory: API allocations plus this session's, with a journal."""

    def __init__(self, inv: Inventory, classes: dict[str, DeviceClass], claims: Iterable[ResourceClaim] = ()) -> None:
        self.inv = inv
        self.classes = classes
        #: uint8[D] claims holding each device (0: free; more than 1 only if the API double-booked it)
        self.used = np.zeros(inv.n_devices, dtype=np.uint8)
        #: uint8[D] 1: freed by free(), but still held by a pod being evicted (pipelining only)
        self.releasing = np.zeros(inv.n_devices, dtype=np.uint8)
        self.allocated: dict[str, ClaimAllocation] = {}
        self._journal: list[tuple[str, Any]] = []
        self._freed: set[str] = set()            # claims freed by free(): their API allocation no longer counts
        self._cores: dict[tuple, DraRequest] = {}  # compiled claim specs (see prepare)
        self._alt_cache: dict[tuple, tuple[np.ndarray, str]] = {}
        self._scratch()
        for c in claims:
            if c.status.allocation is not None:
                self.adopt(c)

    # ------------------------------------------------------------------ state
    def fork(self) -> DraAllocator:
        """A copy for one session: same inventory and compiled masks, own device use."""
        other = DraAllocator.__new__(DraAllocator)
        other.inv, other.classes = self.inv, self.classes
        other.used = self.used.copy()
        other.releasing = self.releasing.copy()
        other.allocated = dict(self.allocated)
        other._journal = []
        other._freed = set()
        other._cores = {}
        other._alt_cache = self._alt_cache
        other._scratch()
        return other

    def _scratch(self) -> None:
        n = max(self.inv.n_devices, 1)
        self._rows = np.empty(n, dtype=np.int32)          # the kernels' per-search scratch
        self._taken = np.zeros(n, dtype=np.uint64)

    def adopt(self, claim: ResourceClaim) -> None:
        """Record an allocation the API already holds (informer event or initial list)."""
        key = f"{claim.metadata.namespace}/{claim.metadata.name}"
        self.forget(key)
        alloc = claim.status.allocation
        if alloc is None:
            return
        inv = self.inv
        rows, admin, results = [], [], []
        nodes = np.ones(inv.n_nodes, dtype=bool)
        for r in alloc.devices.results:
            row = inv.row_of.get((r.driver, r.pool, r.device), -1)
            rows.append(row)
            admin.append(bool(r.admin_access))
            res = {"request": r.request, "driver": r.driver, "pool": r.pool, "device": r.device}
            if r.admin_access:
                res["adminAccess"] = True
            results.append(res)
            if row >= 0:
                nodes &= inv.reach(row)
                if not r.admin_access:
                    self.used[row] += 1
        if alloc.node_selector is not None:
            nodes &= node_selector_mask(alloc.node_selector, inv.node_names, inv.node_labels, inv.node_index)
        by_request = request_classes(claim)
        classes: dict[str, int] = {}
        for r in results:
            cls = by_request.get(r["request"], "")
            classes[cls] = classes.get(cls, 0) + 1
        self.allocated[key] = ClaimAllocation(
            key, results, rows, admin, nodes, node_selector=alloc.node_selector,
            config=[msgspec.to_builtins(c) for c in alloc.devices.config], classes=classes,
            reserved_for=[r.uid for r in claim.status.reserved_for])

    def hold(self, c: ClaimAllocation) -> None:
        """Record an allocation a fork over the same inventory made (kai committed it)."""
        self.forget(c.key)
        self.allocated[c.key] = c
        for row, adm in zip(c.rows, c.admin):
            if row >= 0 and not adm:
                self.used[row] += 1

    def forget(self, key: str) -> None:
        """A claim was deallocated or deleted: its devices are free again."""
        got = self.allocated.pop(key, None)
        if got is not None:
            self._release(got)

    def _release(self, a: ClaimAllocation, releasing: bool = False) -> None:
        for row, adm in zip(a.rows, a.admin):
            if row >= 0 and not adm:
                if self.used[row]:
                    self.used[row] -= 1
                if releasing:
                    self.releasing[row] = 1

    def checkpoint(self) -> int:
        return len(self._journal)

    def rollback(self, mark: int) -> None:
        """Undo every allocation and release made after ``mark``, newest first."""
        while len(self._journal) > mark:
            op, a = self._journal.pop()
            if op == "alloc":
                self.allocated.pop(a.key, None)
                self._release(a)
            else:                                  # "free": put the claim back
                self.allocated[a.key] = a
                for row, adm in zip(a.rows, a.admin):
                    if row >= 0 and not adm:
                        self.used[row] += 1

    def undo(self, allocation: DraAllocation) -> None:
        """Roll back one allocation (and everything after it)."""
        self.rollback(allocation.mark)

    def max_per_node(self, class_name: str, selectors: list, tolerations: list) -> int:
        """The most devices of a class (and selectors) that one node reaches, free or not."""
        m, _ = self._alt_match(class_name, selectors, tolerations)
        per_node = _per_node(self.inv, m, np.ones(self.inv.n_nodes, dtype=bool))
        return int(per_node.max()) if len(per_node) else 0

    # --- out-of-order undo (the scheduling session's event handlers) -------------------
    def release(self, claims: list[ClaimAllocation]) -> None:
        """Undo allocations whatever came after them (a pod's :attr:`DraAllocation.own`, say):
        each claim still holding exactly that allocation is forgotten, its devices freed."""
        for c in claims:
            if self.allocated.get(c.key) is c:
                del self.allocated[c.key]
                self._release(c)

    def free(self, key: str) -> ClaimAllocation | None:
        """Free a claim's devices because its consumers are evicted: they are releasing (a pod
        that takes them is pipelined). The allocation, for :meth:`restore`."""
        got = self.allocated.pop(key, None)
        if got is not None:
            self._release(got, True)
            self._freed.add(key)
        return got

    def restore(self, claims: list[ClaimAllocation], back: bool = False) -> bool:
        """Put back claims taken away by :meth:`release` or :meth:`free`, on the very same
        devices (``back``: their pods' eviction is undone, the devices are no longer
        releasing); False (and nothing changed) when a claim or device was taken meanwhile."""
        for c in claims:
            if c.key in self.allocated:
                return False
            for row, adm in zip(c.rows, c.admin):
                if row >= 0 and not adm and self.used[row]:
                    return False
        for c in claims:
            self.allocated[c.key] = c
            self._freed.discard(c.key)
            for row, adm in zip(c.rows, c.admin):
                if row >= 0 and not adm:
                    self.used[row] += 1
                    if back:
                        self.releasing[row] = 0
        return True

    def allocate_waiting(self, req: DraRequest, node: int, pod_uid: str = "") -> tuple[DraAllocation | None, bool]:
        """:meth:`allocate` on devices free now if it can, else on releasing ones too; the
        second value is True when the allocation needs devices evicted pods still hold."""
        rel = self.releasing
        if not rel.any():
            return self.allocate(req, node, pod_uid), False
        hide = (rel != 0) & (self.used == 0)
        self.used[hide] = 1
        try:
            got = self.allocate(req, node, pod_uid)
        finally:
            self.used[hide] = 0
        if got is not None:
            return got, False
        got = self.allocate(req, node, pod_uid)
        return got, got is not None

    def free_claim(self, key: str) -> int:
        """Virtually free a claim's devices (its last consumer is evicted); returns the journal
        mark to roll back to."""
        mark = len(self._journal)
        got = self.allocated.pop(key, None)
        if got is not None:
            self._release(got)
            self._journal.append(("free", got))
        return mark

    # ------------------------------------------------------------------ compile
    def _alt_match(self, class_name: str, selectors: list, tolerations: list[DeviceToleration]) -> tuple[np.ndarray, str]:
        """bool[D] candidates of one request alternative, and what emptied it (if it is empty)."""
        inv = self.inv
        cls = self.classes.get(class_name)
        class_exprs = tuple(s.cel.expression for s in cls.spec.selectors if s.cel) if cls is not None else ()
        req_exprs = tuple(s.cel.expression for s in selectors if s.cel)
        tol_key = tuple((t.key, t.operator, t.value, t.effect) for t in tolerations)
        key = (class_name, class_exprs, req_exprs, tol_key)
        got = self._alt_cache.get(key)
        if got is not None:
            return got
        m = np.ones(inv.n_devices, dtype=bool)
        why = ""
        errors: list[str] = []
        for where, exprs in (("device class " + class_name, class_exprs), ("request", req_exprs)):
            for i, ex in enumerate(exprs):
                sel = compile_selector(ex)
                if sel.error:
                    m[:] = False
                    why = f"{where}: selector #{i}: {sel.error}"
                    break
                codes = sel.evaluate(inv, where=m)
                err = m & (codes == E)
                if err.any():
                    row = int(np.flatnonzero(err)[0])
                    errors.append(f"{where}: selector #{i} on {int(err.sum())} devices: CEL runtime error: "
                                  f"{sel.runtime_error(inv, row)}")
                m &= codes == T
                if not m.any() and not why:
                    why = f"no device matches {where} selector #{i}"
            if why and not m.any():
                break
        matched = m.copy()
        m &= inv.dev_ok.astype(bool)
        lost: list[str] = []
        unusable = np.flatnonzero(matched & ~m)
        if len(unusable):
            lost.append(f"{len(unusable)} matching devices are unusable: "
                        + "; ".join(dict.fromkeys(inv.problems.get(int(r), "") for r in unusable[:20])))
        tainted = m & inv.dev_tainted.astype(bool)
        if tainted.any():
            for row in np.flatnonzero(tainted).tolist():
                if not all(tolerates(tolerations, t) for t in inv.taints.get(row, [])):
                    m[row] = False
            n_bad = int((tainted & ~m).sum())
            if n_bad:
                lost.append(f"{n_bad} matching devices have taints the request does not tolerate")
        if not m.any():
            why = "; ".join(errors + lost) or why
        got = (m, why)
        if len(self._alt_cache) < 10_000:
            self._alt_cache[key] = got
        return got

    def prepare(self, pod_claims: list[PodClaim], pod_uid: str = "") -> DraRequest:
        inv = self.inv
        reasons: list[str] = []
        pending: list[PodClaim] = []
        nodes = np.ones(inv.n_nodes, dtype=bool)
        seen: set[str] = set()
        for pc in pod_claims:
            if pc.problem:
                reasons.append(pc.problem)
                continue
            if pc.key in seen:
                continue
            seen.add(pc.key)
            claim = pc.claim
            assert claim is not None
            if claim.metadata.deletion_timestamp is not None:
                reasons.append(f"resource claim {pc.key} is being deleted")
                continue
            got = self.allocated.get(pc.key)
            if got is None and claim.status.allocation is not None and pc.key not in self._freed:
                self.adopt(claim)
                got = self.allocated.get(pc.key)
            if got is not None:
                if (len(got.reserved_for) >= RESERVED_FOR_MAX and pod_uid and pod_uid not in got.reserved_for):
                    reasons.append(f"resource claim {pc.key} is reserved for {RESERVED_FOR_MAX} consumers already")
                nodes &= got.nodes
                continue
            pending.append(pc)
        if len(pending) > MAX_CLAIMS:
            reasons.append(f"pod has {len(pending)} unallocated resource claims; kai allocates at most "
                           f"{MAX_CLAIMS} at once")
            pending = []
        # pods whose unallocated claims have the same specs (one template) share one compile
        key = tuple(_spec_key(pc.claim) for pc in pending)   # type: ignore[arg-type]
        core = self._cores.get(key)
        if core is not None:
            return dataclasses.replace(core, pod_claims=pod_claims, reasons=reasons, pending=pending,
                                       allocated_nodes=nodes, search=core.search, core=core)
        n_reasons = len(reasons)
        req = self._compile(pod_claims, reasons, pending, nodes)
        if len(req.reasons) == n_reasons and len(self._cores) < 1000:
            self._cores[key] = req.core = dataclasses.replace(req, pod_claims=[], reasons=[], pending=[])
        return req

    def _compile(self, pod_claims: list[PodClaim], reasons: list[str], pending: list[PodClaim],
                 nodes: np.ndarray) -> DraRequest:
        inv = self.inv
        alts: list[_Alt] = []
        starts = [0]
        req_claim: list[int] = []
        req_names: list[tuple[int, str]] = []
        constraints: list[tuple[int, DeviceConstraint]] = []
        for ci, pc in enumerate(pending):
            spec = pc.claim.spec.devices                       # type: ignore[union-attr]
            where = f"resource claim {pc.key}"
            min_devices = 0
            for r in spec.requests:
                subs = [(r.name, r.exactly)] if r.exactly is not None else \
                    [(f"{r.name}/{s.name}", s) for s in r.first_available]
                if not subs:
                    reasons.append(f"{where}, request {r.name}: neither exactly nor firstAvailable is set")
                    continue
                fewest = None
                for name, s in subs:
                    if s.device_class_name not in self.classes:
                        reasons.append(f"{where}, request {name}: device class {s.device_class_name!r} not found")
                    if s.capacity is not None and s.capacity.requests:
                        reasons.append(f"{where}, request {name}: capacity.requests (consumable capacity) is not "
                                       "supported by kai")
                    if s.allocation_mode not in (EXACT_COUNT, ALL):
                        reasons.append(f"{where}, request {name}: allocationMode {s.allocation_mode!r} is not "
                                       "supported")
                    count = 0 if s.allocation_mode == ALL else int(s.count)
                    if s.allocation_mode == EXACT_COUNT and count < 1:
                        reasons.append(f"{where}, request {name}: count must be at least 1")
                    m, why = self._alt_match(s.device_class_name, s.selectors, s.tolerations)
                    alts.append(_Alt(name, r.name, s.device_class_name, count,
                                     bool(getattr(s, "admin_access", None)), m, why))
                    fewest = count if fewest is None else min(fewest, count)
                min_devices += max(fewest or 0, 1)
                starts.append(len(alts))
                req_claim.append(ci)
                req_names.append((ci, r.name))
            if min_devices > RESULTS_MAX:
                reasons.append(f"{where}: requests {min_devices} devices, more than the {RESULTS_MAX} a claim "
                               "may hold")
            for k, c in enumerate(spec.constraints):
                if c.distinct_attribute is not None:
                    reasons.append(f"{where}, constraint #{k}: distinctAttribute (consumable capacity) is not "
                                   "supported by kai")
                elif c.match_attribute:
                    constraints.append((ci, c))
        A, D = len(alts), inv.n_devices
        cand = np.zeros((A, D), dtype=np.uint8)
        for a, alt in enumerate(alts):
            cand[a] = alt.match
        K = len(constraints)
        con_attr = np.full((K, D), -1, dtype=np.int32)
        con_claim = np.zeros(K, dtype=np.int32)
        con_alt = np.zeros((K, A), dtype=np.uint8)
        for k, (ci, c) in enumerate(constraints):
            con_attr[k] = inv.attr_column(c.match_attribute)[0]   # type: ignore[arg-type]
            con_claim[k] = ci
            names = set(c.requests)
            for a, alt in enumerate(alts):
                if req_claim[_request_of(starts, a)] != ci:
                    continue
                if not names or alt.request in names or alt.name in names:
                    con_alt[k, a] = 1
        exact = K == 0 and all(starts[q + 1] - starts[q] == 1 for q in range(len(req_claim))) \
            and all(alt.count > 0 and not alt.admin for alt in alts) and _disjoint(cand)
        alt_claim = [req_claim[q] for q in range(len(req_claim)) for _ in range(starts[q + 1] - starts[q])]
        return DraRequest(pod_claims, reasons, pending, alts, np.array(starts, dtype=np.int32),
                          np.array(req_claim, dtype=np.int32), req_names, constraints, cand,
                          np.array([a.count for a in alts], dtype=np.int32),
                          np.array([a.admin for a in alts], dtype=np.uint8), con_attr, con_claim, con_alt,
                          exact, nodes, alt_claim=alt_claim)

    # ------------------------------------------------------------------ decide
    def _search(self, req: DraRequest):
        if req.search is None:
            inv = self.inv
            req.search = Search(req.cand, self.used, req.alt_count, req.alt_admin, req.req_alt_start,
                                req.req_claim, req.con_attr, req.con_claim, req.con_alt, inv.dev_node,
                                inv.dev_scope, inv.scope_nodes, inv.node_start, inv.net_start,
                                inv.node_pool_bad, max(len(req.pending), 1), RESULTS_MAX, SEARCH_BUDGET,
                                self._rows, self._taken)
            if req.core is not None:
                req.core.search = req.search
        return req.search

    def feasible(self, req: DraRequest, base: np.ndarray | None = None) -> np.ndarray:
        """uint8[N]: nodes (among ``base``) where every claim of the pod can be satisfied."""
        inv = self.inv
        n = inv.n_nodes
        if req.reasons:
            return np.zeros(n, dtype=np.uint8)
        mask = req.allocated_nodes if base is None else (req.allocated_nodes & (base != 0))
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        if not req.alts:
            return mask
        out = np.empty(n, dtype=np.uint8)
        A = len(req.alts)
        counts = np.empty((A, n), dtype=np.int32)
        busy = np.empty((A, n), dtype=np.int32)
        _node_mask(req.cand, self.used, req.alt_count, req.alt_admin, req.req_alt_start, inv.dev_node,
                   inv.dev_scope, inv.scope_nodes, inv.net_start, inv.node_pool_bad, mask, counts, busy, out)
        if not req.exact_by_counts:
            nodes = np.flatnonzero(out).astype(np.int32)
            if len(nodes):
                ok = np.empty(len(nodes), dtype=np.uint8)
                self._search(req).feasible(nodes, ok)
                out[nodes] = ok
        return out

    def allocate(self, req: DraRequest, node: int, pod_uid: str = "") -> DraAllocation | None:
        """Pick devices for all of the pod's claims on ``node``; None if they do not fit."""
        inv = self.inv
        if req.reasons or not req.allocated_nodes[node]:
            return None
        mark = len(self._journal)
        claims: list[ClaimAllocation] = []
        if req.alts:
            size = max(len(req.pending), 1) * RESULTS_MAX
            rows = np.empty(size, dtype=np.int32)
            alt_of = np.empty(size, dtype=np.int32)
            n = self._search(req).pick(node, rows, alt_of)
            if n < 0:
                return None
            per_claim: dict[int, list[tuple[int, int]]] = {}
            alt_claim = req.alt_claim
            for row, a in zip(rows[:n].tolist(), alt_of[:n].tolist()):
                per_claim.setdefault(alt_claim[a], []).append((row, a))
            for ci, pc in enumerate(req.pending):
                got = self._claim_allocation(req, pc, per_claim.get(ci, []), node)
                got.reserved_for = [pod_uid] if pod_uid else []
                self.allocated[pc.key] = got
                for row, adm in zip(got.rows, got.admin):
                    if not adm:
                        self.used[row] += 1
                self._journal.append(("alloc", got))
                claims.append(got)
        new = {c.key for c in claims}
        for pc in req.pod_claims:
            if pc.key and pc.key not in new and pc.key in self.allocated:
                claims.append(self.allocated[pc.key])
        return DraAllocation(node, claims, mark, own=claims[:len(req.pending) if req.alts else 0], inv=inv)

    def allocate_gang(self, decisions: list[tuple[DraRequest, int]]) -> list[DraAllocation] | None:
        """All of a gang's pods' claims on their chosen nodes, or nothing."""
        mark = self.checkpoint()
        out = []
        for req, node in decisions:
            got = self.allocate(req, node)
            if got is None:
                self.rollback(mark)
                return None
            out.append(got)
        return out

    def _claim_allocation(self, req: DraRequest, pc: PodClaim, picked: list[tuple[int, int]], node: int) -> ClaimAllocation:
        inv = self.inv
        results, rows, admin = [], [], []
        classes: dict[str, int] = {}
        used_alts: list[_Alt] = []
        for row, a in picked:
            alt = req.alts[a]
            driver, pool, device = inv.device_id(row)
            res: dict[str, Any] = {"request": alt.name, "driver": driver, "pool": pool, "device": device}
            if alt.admin:
                res["adminAccess"] = True
            results.append(res)
            rows.append(row)
            admin.append(alt.admin)
            classes[alt.class_name] = classes.get(alt.class_name, 0) + 1
            if alt not in used_alts:
                used_alts.append(alt)
        nodes = self._reach_all(rows)
        return ClaimAllocation(pc.key, results, rows, admin, nodes, self._config(pc, used_alts),
                               self._node_selector(rows, node), classes, new=True, claim=pc.claim)

    def _reach_all(self, rows: list[int]) -> np.ndarray:
        """bool[N]: nodes that reach every device of ``rows`` (one array, not one per device)."""
        inv = self.inv
        local = {int(inv.dev_node[r]) for r in rows if inv.dev_node[r] >= 0}
        if len(local) > 1:
            return np.zeros(inv.n_nodes, dtype=bool)
        if local:
            nodes = np.zeros(inv.n_nodes, dtype=bool)
            nodes[local.pop()] = True
        else:
            nodes = np.ones(inv.n_nodes, dtype=bool)
        for scope in {int(inv.dev_scope[r]) for r in rows if inv.dev_node[r] < 0}:
            nodes &= inv.scope_nodes[scope].astype(bool)
        return nodes

    def _config(self, pc: PodClaim, used_alts: list[_Alt]) -> list[dict[str, Any]]:
        """Class configs (each class once), then the claim's configs for the chosen requests."""
        out: list[dict[str, Any]] = []
        by_class: dict[str, list[dict[str, Any]]] = {}
        for alt in used_alts:
            if alt.class_name in by_class:
                for c in by_class[alt.class_name]:
                    c["requests"].append(alt.name)
                continue
            cls = self.classes.get(alt.class_name)
            entries = []
            for c in (cls.spec.config if cls is not None else []):
                entries.append({"source": "FromClass", "requests": [alt.name],
                                "opaque": msgspec.to_builtins(c.opaque)})
            by_class[alt.class_name] = entries
            out.extend(entries)
        chosen = {a.name for a in used_alts} | {a.request for a in used_alts}
        for c in pc.claim.spec.devices.config:               # type: ignore[union-attr]
            if not c.requests or chosen & set(c.requests):
                out.append({"source": "FromClaim", "requests": list(c.requests),
                            "opaque": msgspec.to_builtins(c.opaque)})
        n_requests = len(pc.claim.spec.devices.requests)     # type: ignore[union-attr]
        for c in out:
            if len(c["requests"]) == n_requests and c["source"] == "FromClass":
                c["requests"] = []
        return out

    def _node_selector(self, rows: list[int], node: int) -> NodeSelector | None:
        """Where the claim's devices are: the node for node-local ones, the slice's selector for
        network-attached ones, none for allNodes."""
        inv = self.inv
        selectors = []
        for row in rows:
            if inv.dev_node[row] >= 0:
                return _node_name_selector(inv.node_names[node])
            sel = inv.scope_selectors[int(inv.dev_scope[row])]
            if sel is not None and sel not in selectors:
                selectors.append(sel)
        if not selectors:
            return None
        if len(selectors) == 1:
            return selectors[0]
        return _node_name_selector(inv.node_names[node])

    # ------------------------------------------------------------------ explain
    def explain(self, req: DraRequest, base: np.ndarray | None = None) -> str:
        """Why no node (among ``base``) fits the pod's claims; "" if some node does."""
        if req.reasons:
            return "; ".join(dict.fromkeys(req.reasons))
        inv = self.inv
        base_b = np.ones(inv.n_nodes, dtype=bool) if base is None else base.astype(bool)
        if not (req.allocated_nodes & base_b).any():
            keys = [pc.key for pc in req.pod_claims if pc.key in self.allocated and pc.key not in
                    {p.key for p in req.pending}]
            return (f"no eligible node reaches the devices already allocated to resource claim(s) "
                    f"{', '.join(keys)}")
        if self.feasible(req, base_b.astype(np.uint8)).any():
            return ""
        parts: list[str] = []
        for q, (ci, rname) in enumerate(req.req_names):
            key = req.pending[ci].key
            a0, a1 = int(req.req_alt_start[q]), int(req.req_alt_start[q + 1])
            texts = []
            ok_somewhere = False
            for a in range(a0, a1):
                alt = req.alts[a]
                m = alt.match
                reach = base_b & req.allocated_nodes
                free = m if alt.admin else (m & (self.used == 0))
                per_node = _per_node(inv, free, reach)
                best = int(per_node.max()) if len(per_node) else 0
                want = "all matching devices" if alt.count == 0 else f"{alt.count} device(s)"
                if not m.any():
                    texts.append(f"request {alt.name}: no device of class {alt.class_name} is available"
                                 + (f" ({alt.why})" if alt.why else ""))
                elif alt.count == 0:
                    if not (per_node > 0).any():
                        texts.append(f"request {alt.name} (allocationMode All, class {alt.class_name}): no eligible "
                                     "node has a free matching device")
                    else:
                        texts.append(f"request {alt.name} (allocationMode All, class {alt.class_name}): every node "
                                     "with matching devices has some in use or reaches an incomplete resource pool")
                elif best < alt.count:
                    texts.append(f"request {alt.name}: needs {want} of class {alt.class_name} on one node; "
                                 f"{int(m.sum())} match, {int((m & (self.used != 0)).sum())} in use, at most {best} "
                                 "free on an eligible node")
                else:
                    ok_somewhere = True
            if not ok_somewhere and texts:
                parts.append(f"resource claim {key}: " + "; ".join(texts))
        if not parts:
            cons = [f"matchAttribute {c.match_attribute}" for _, c in req.constraints]
            what = " and constraints (" + ", ".join(cons) + ")" if cons else ""
            parts.append("no node has devices for all requests of the pod's resource claims together" + what)
        return "; ".join(parts)


def _request_of(starts, a: int) -> int:
    """Request index owning alternative ``a``."""
    return int(np.searchsorted(np.asarray(starts), a, side="right")) - 1


def _disjoint(cand: np.ndarray) -> bool:
    if len(cand) <= 1 or cand.shape[1] == 0:
        return True
    return int(cand.sum(axis=0, dtype=np.int32).max()) <= 1


def _per_node(inv: Inventory, rows_mask: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """int[N]: devices of ``rows_mask`` reachable from each node of ``nodes`` (0 elsewhere)."""
    local = rows_mask[: inv.net_start]
    out = np.bincount(inv.dev_node[: inv.net_start][local], minlength=inv.n_nodes).astype(np.int64)
    if inv.net_start < inv.n_devices:
        net = rows_mask[inv.net_start:]
        scopes = np.bincount(inv.dev_scope[inv.net_start:][net], minlength=len(inv.scope_nodes))
        out += scopes @ inv.scope_nodes.astype(np.int64)
    return np.where(nodes, out, 0)


def _node_name_selector(name: str) -> NodeSelector:
    return NodeSelector(node_selector_terms=[NodeSelectorTerm(match_fields=[
        NodeSelectorRequirement(key="metadata.name", operator="In", values=[name])])])
