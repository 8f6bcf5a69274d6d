"""topology: keep a job (or SubGroup) inside one topology domain, and pack it within.

KAI's topology plugin (``pkg/scheduler/plugins/topology``). Registers:

* a SubsetNodes fn (``ssn.subset_nodes_fns``): for a SubGroup-tree node with a
  ``topologyConstraint``, the candidate domains its tasks may go to, in bin-packing
  order. The allocate action tries them one by one under a checkpoint.
* a NodeOrder fn (``ssn.node_order_fns``): the preferred-level proximity score
  (band ``TOPOLOGY_SCORE`` = 10^4).

Per session and per Topology CR (``kai.scheduler/v1alpha1``, ``spec.levels[].nodeLabel``,
broadest level first) a ``DomainTree`` is built from the node table's encoded label
columns, vectorized: a domain of level i is a distinct tuple of the label values of
levels 0..i (its id is those values joined with '.', as in KAI), the root holds every
node, and nodes missing any level label are outside the topology.

SubsetNodes for a constraint {topology, requiredTopologyLevel, preferredTopologyLevel}:

1. the incoming node set's lowest common domain (no deeper than the preferred level) is
   the scope; free resources (idle + releasing) are summed per domain over it;
2. how many of the tasks each domain can hold: with homogeneous tasks, "representor pod"
   accounting (per node, how many copies of the element-wise largest request fit); with
   heterogeneous tasks, the request sum must not exceed the domain's free resources;
3. candidates are the domains of the levels from the preferred (or required) level up to
   the required level (or the root); with active pods of the job and a required level,
   only domains under required-level domains already holding them; domains that can't
   hold every task are dropped;
4. order: deepest level first; within a level, the tree order with siblings sorted by the
   job's request-to-free ratio (highest first, i.e. fullest), then fewer allocatable pods,
   then id -- bin-packing;
5. with a preferred level, nodes are scored by the rank of their preferred-level domain in
   that order: the i-th of n scores floor(10*(i+1)/n) * 10^4, so the domains with the most
   room win and the pods concentrate in few of them.
"""
from __future__ import annotations

import numpy as np

from kai.api import constants as C
from kai.api.resources import CPU, GPU, MEMORY, PODS
from kai.framework.plugin import Plugin, alike_stable, label_blind, register_plugin

S = C.PodStatus
TOPOLOGY_SCORE = 10_000.0          # KAI scores.Topology
NO_RESOURCE_RATIO = 1000.0          # KAI requiredResourceNotInDomainRatio
_EPS = 1e-9
ROOT = -1                          # level index of the root domain


def level_noun(label: str) -> str:
    """'topology.kubernetes.io/zone' -> 'zone' (for messages)."""
    return label.rsplit("/", 1)[-1] or label


class DomainTree:
    """One Topology CR over the session's nodes.

    ``dom[i]``: int32[N], the level-i domain of each node (-1: node outside the topology);
    ``ids[i]``: the domain ids of level i; ``rep[i]``: a node of each level-i domain.
    Level ``ROOT`` (-1) has one domain, 0, holding every valid node.
    """

    def __init__(self, name: str, levels: list[str], table) -> None:
        self.name = name
        self.levels = levels
        n = table.n
        valid = table.in_use.astype(bool).copy()
        cols, values = [], []
        for label in levels:
            col, rev = table.label_column(label)
            valid &= col >= 0
            cols.append(col)
            values.append(rev)
        self.valid = valid
        idx = np.flatnonzero(valid)
        self.dom: list[np.ndarray] = []
        self.ids: list[list[str]] = []
        self.rep: list[np.ndarray] = []
        self.id_rank: list[np.ndarray] = []
        for i in range(len(levels)):
            d = np.full(n, -1, dtype=np.int32)
            if len(idx):
                keys_i = np.stack([cols[j][idx] for j in range(i + 1)], axis=1)
                uniq, first, inv = np.unique(keys_i, axis=0, return_index=True, return_inverse=True)
                d[idx] = inv.reshape(-1)
                self.ids.append([".".join(values[j][int(v)] for j, v in enumerate(row)) for row in uniq])
                self.rep.append(idx[first])
            else:
                self.ids.append([])
                self.rep.append(np.zeros(0, dtype=np.int64))
            self.dom.append(d)
            # rank of each domain id in string order (ties in the bin-packing sort break by id)
            rank = np.empty(len(self.ids[i]), dtype=np.int64)
            rank[np.argsort(np.array(self.ids[i], dtype=object), kind="stable")] = np.arange(len(self.ids[i]))
            self.id_rank.append(rank)

    def level_index(self, label: str) -> int | None:
        try:
            return self.levels.index(label)
        except ValueError:
            return None

    def dom_of(self, level: int) -> np.ndarray:
        if level == ROOT:
            return np.where(self.valid, 0, -1).astype(np.int32)
        return self.dom[level]

    def n_domains(self, level: int) -> int:
        return 1 if level == ROOT else len(self.ids[level])

    def domain_id(self, level: int, d: int) -> str:
        return "root" if level == ROOT else self.ids[level][d]

    def describe(self, level: int, d: int) -> str:
        if level == ROOT:
            return f"topology {self.name!r}"
        return f"{level_noun(self.levels[level])} {self.ids[level][d]}"

    def ancestor(self, level: int, doms: np.ndarray, up: int) -> np.ndarray:
        """The level-``up`` ancestors of level-``level`` domains ``doms`` (up <= level)."""
        if up == ROOT:
            return np.zeros(len(doms), dtype=np.int32)
        if up == level:
            return doms
        return self.dom[up][self.rep[level][doms]]


def _tree(name: str, levels: list[str], table) -> DomainTree:
    """The topology's domain tree over ``table``, kept on the table (``NodeTable.derived``)
    while the table's generation and size stay the same."""
    cache = table.derived
    now = (table.generation, table.n)
    key = ("topology", *now, name, tuple(levels))
    got = cache.get(key)
    if got is None:
        for old in [k for k in cache if k[0] == "topology" and k[1:3] != now]:
            del cache[old]                      # made at an earlier generation: never asked again
        got = cache[key] = DomainTree(name, levels, table)
    return got


@register_plugin
class TopologyPlugin(Plugin):
    name = "topology"

    def on_session_open(self, ssn) -> None:
        self.ssn = ssn
        table = ssn.state.nodes
        self.trees: dict[str, DomainTree] = {}
        for t in ssn.state.topologies.values():
            levels = [lv.node_label for lv in t.spec.levels if lv.node_label]
            self.trees[t.metadata.name] = _tree(t.metadata.name, levels, table)
        # (job key, subgroup name) -> float64[N] preferred-level scores of the job being placed
        self.scores: dict[tuple[str, str], np.ndarray] = {}
        self._scores_job = ""
        ssn.subset_nodes_fns.append(self.subset_nodes)
        ssn.node_order_fns.append(self.node_order)

    # ------------------------------------------------------------------ node order
    # Both fns keep the look-alike contract: a single-pod job has no SubGroups and no topology
    # constraint (``PodGroupInfo.lone_task``), and to such a job both answer None.
    @label_blind
    @alike_stable
    def node_order(self, task, job, mask):
        if not self.scores or self._scores_job != job.key:
            return None
        ps = job.podset_of(task)
        sg = ps.leaf
        while sg is not None:
            got = self.scores.get((job.key, sg.name))
            if got is not None:
                return got
            sg = sg.parent
        return None

    # ------------------------------------------------------------------ subset nodes
    @label_blind
    @alike_stable
    def subset_nodes(self, job, sg, podsets, tasks, node_set):
        if self._scores_job != job.key or sg.parent is None:
            # KAI's PreJobAllocation: a new job (or a new walk of it) invalidates the scores
            self.scores.clear()
            self._scores_job = job.key
        tc = sg.topology_constraint
        if tc is None or not tc.topology or not tasks:
            return None
        who = f"subgroup {sg.name!r} of job {job.key}" if sg.name else f"job {job.key}"
        tree = self.trees.get(tc.topology)
        if tree is None:
            return f"topology {tc.topology!r} requested by {who} does not exist"
        required, preferred = tc.required_topology_level, tc.preferred_topology_level
        if not required and not preferred:
            return None
        req_i = tree.level_index(required) if required else ROOT
        pref_i = tree.level_index(preferred) if preferred else None
        for kind, label, i in (("required", required, req_i), ("preferred", preferred, pref_i)):
            if label and i is None:
                return (f"topology constraint error: {who} names {label!r} as its {kind} level, "
                        f"but topology {tree.name!r} has no level with that node label "
                        f"(levels: {', '.join(tree.levels) or 'none'})")
        if pref_i is not None and pref_i < req_i:
            return (f"topology constraint error: {who} prefers level {preferred!r}, which is broader "
                    f"than its required level {required!r} in topology {tree.name!r}")
        return self._split(job, sg, podsets, tasks, node_set, tree, req_i, pref_i, who)

    def _split(self, job, sg, podsets, tasks, node_set, tree, req_i, pref_i, who):
        ssn = self.ssn
        scope = tree.valid.copy()
        if node_set is not None:
            scope &= node_set.astype(bool)
        n_tasks = len(tasks)
        noun_req = level_noun(tree.levels[req_i]) if req_i != ROOT else "domain"
        if not scope.any():
            return (f"topology {tree.name!r}: no node of the candidate set carries every level label "
                    f"({', '.join(tree.levels)}), so none can hold {who}")
        # Nodes none of the tasks may use (selector, affinity, taints, ...) hold none of them:
        # leaving them out drops domains that would only fail placement (KAI counts them).
        feasible = np.zeros_like(scope)
        seen = set()
        for t in tasks:
            if t.signature not in seen:
                seen.add(t.signature)
                feasible |= ssn.node_mask(t, job).astype(bool)
        if not (scope & feasible).any():
            # let the placement explain it, once, over the topology's nodes
            return [(np.ascontiguousarray(scope, dtype=np.uint8), f"topology {tree.name!r}")]
        scope &= feasible
        nodes = np.flatnonzero(scope)
        # lowest common domain of the scope, no deeper than the preferred level
        stop = pref_i if pref_i is not None else len(tree.levels) - 1
        common = ROOT
        for i in range(0, stop + 1):
            d = tree.dom[i][nodes]
            if (d == d[0]).all():
                common = i
            else:
                break

        width = ssn.allocatable.shape[0]
        reqs = np.stack([t.req_vec(width) for t in tasks])
        total = reqs.sum(axis=0)
        avail = ssn.avail
        representor = _homogeneous(reqs)
        node_pods = _representor_counts(reqs, avail, nodes, n_tasks) if representor else None
        cols = [c for c in np.flatnonzero(total > 0) if c != PODS]

        stats: dict[int, tuple] = {}

        def level_stats(level: int):
            got = stats.get(level)
            if got is None:
                dom = tree.dom_of(level)[nodes]
                nd = tree.n_domains(level)
                free = {c: np.bincount(dom, weights=avail[c, nodes], minlength=nd) for c in cols}
                ratio = np.zeros(nd)
                for c in cols:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        r = np.where(free[c] > _EPS, total[c] / np.maximum(free[c], _EPS), NO_RESOURCE_RATIO)
                    ratio = np.maximum(ratio, r)
                pods = (np.bincount(dom, weights=node_pods, minlength=nd) if representor
                        else np.full(nd, -1.0))
                present = np.bincount(dom, minlength=nd) > 0
                got = stats[level] = (ratio, pods, present, free)
            return got

        def fits(level: int, d: np.ndarray) -> np.ndarray:
            ratio, pods, _, _ = level_stats(level)
            if representor:
                return pods[d] + _EPS >= n_tasks
            return ratio[d] <= 1.0 + _EPS

        common_dom = int(tree.dom_of(common)[nodes[0]])
        if not fits(common, np.array([common_dom]))[0]:
            where = "the cluster" if common == ROOT else tree.describe(common, common_dom)
            return (f"topology {tree.name!r}: not enough free resources in {where} for {who} "
                    f"({self._room(tree, common, common_dom, level_stats, representor, total, cols, n_tasks)})")

        # candidate levels: from the preferred (or required) level up to the required level
        deepest = pref_i if pref_i is not None else req_i
        levels = [i for i in range(deepest, req_i - 1, -1) if i >= common] or [common]

        allowed_req = None
        if req_i != ROOT and any(ps.active_allocated for ps in podsets):
            table = ssn.state.nodes
            held = set()
            for ps in podsets:
                for t in ps.tasks:
                    if t.status & C.ACTIVE_ALLOCATED and t.node_name:
                        info = table.by_name.get(t.node_name)
                        if info is not None:
                            held.add(int(tree.dom[req_i][info.idx]))
            allowed_req = np.array(sorted(held - {-1}), dtype=np.int32)

        def ordered(level: int, doms: np.ndarray) -> np.ndarray:
            """``doms`` in tree order below the common domain, siblings fullest first
            (higher request-to-free ratio), then fewer allocatable pods, then id."""
            if len(doms) < 2:
                return doms
            keys = []       # np.lexsort: last key is the primary one
            for j in range(level, common, -1):
                anc = tree.ancestor(level, doms, j)
                ratio, pods, _, _ = level_stats(j)
                keys += [tree.id_rank[j][anc], pods[anc], -ratio[anc]]
            if not keys:
                return np.sort(doms)
            return doms[np.lexsort(keys)]

        out = []                    # (level, ordered domains, node grouping) per level
        top_failures: list[int] = []
        for level in levels:
            _, _, present, _ = level_stats(level)
            doms = np.flatnonzero(present).astype(np.int32)
            if allowed_req is not None:
                doms = doms[np.isin(tree.ancestor(level, doms, req_i), allowed_req)]
            ok = fits(level, doms)
            if level == levels[-1]:
                top_failures = [int(d) for d in doms[~ok]]
            doms = doms[ok]
            if not len(doms):
                continue
            # group the scope's nodes by domain once: each mask costs O(its nodes), not O(N)
            dom_scope = tree.dom_of(level)[nodes]
            by_dom = np.argsort(dom_scope, kind="stable")
            starts = np.searchsorted(dom_scope[by_dom], doms, side="left")
            ends = np.searchsorted(dom_scope[by_dom], doms, side="right")
            seq = ordered(level, doms)
            pos = np.argsort(doms)[np.searchsorted(doms[np.argsort(doms)], seq)]
            out.append((level, seq, nodes[by_dom], starts[pos], ends[pos]))

        if pref_i is not None:
            self._score(job, sg, tree, nodes, pref_i, ordered)

        if not out:
            top = levels[-1]
            if allowed_req is not None and not len(allowed_req):
                return (f"topology {tree.name!r}: {who} has active pods outside the topology's "
                        f"{noun_req} domains, so its required level {tree.levels[req_i]!r} can't be met")
            if allowed_req is not None:
                held_ids = ", ".join(tree.ids[req_i][d] for d in allowed_req)
                lead = (f"the {noun_req} holding the job's running pods ({held_ids}) can't hold "
                        f"the other {n_tasks} pod(s) of {who}")
            else:
                noun = level_noun(tree.levels[top]) if top != ROOT else "domain"
                lead = f"no {noun} of topology {tree.name!r} can hold all {n_tasks} pods of {who}"
            if not top_failures:
                return lead
            ratio, pods, _, _ = level_stats(top)
            if representor:
                best = max(top_failures, key=lambda d: (pods[d], -ratio[d]))
            else:
                best = min(top_failures, key=lambda d: (ratio[d], -pods[d]))
            return (f"{lead}: best ({tree.domain_id(top, best)}) has "
                    f"{self._room(tree, top, best, level_stats, representor, total, cols, n_tasks)}")
        return _node_sets(tree, scope.shape[0], out)

    def _room(self, tree, level, d, level_stats, representor, total, cols, n_tasks) -> str:
        ratio, pods, _, free = level_stats(level)
        if representor:
            return f"room for {int(pods[d])} of {n_tasks} pods"
        names = self.ssn.registry.names
        short = []
        for c in cols:
            if total[c] > free[c][d] + _EPS:
                short.append(f"{names[c]} {_fmt(free[c][d], c)} free of {_fmt(total[c], c)} needed")
        return ", ".join(short) if short else "room by resource sums"

    def _score(self, job, sg, tree, nodes, pref_i, ordered) -> None:
        """floor(10*(i+1)/n) * 10^4 for nodes of the i-th preferred-level domain (tree order)."""
        dom = tree.dom[pref_i][nodes]
        doms = np.unique(dom).astype(np.int32)
        seq = ordered(pref_i, doms)
        n = len(seq)
        rank = np.zeros(tree.n_domains(pref_i))
        rank[seq] = np.floor(10.0 * np.arange(1, n + 1) / n) * TOPOLOGY_SCORE
        scores = np.zeros(self.ssn.allocatable.shape[1])
        scores[nodes] = rank[dom]
        self.scores[(job.key, sg.name)] = scores


def _node_sets(tree: DomainTree, n: int, plan):
    """The candidate masks, built one at a time as the allocate walk asks for them."""
    for level, seq, grouped, starts, ends in plan:
        for d, a, b in zip(seq.tolist(), starts.tolist(), ends.tolist()):
            mask = np.zeros(n, dtype=np.uint8)
            mask[grouped[a:b]] = 1
            yield mask, tree.describe(level, d)


def _homogeneous(reqs: np.ndarray) -> bool:
    """KAI's useRepresentorPodsAccounting: every task asks for the same extended resources,
    and either all or none ask for GPUs."""
    gpu = reqs[:, GPU] > 0
    if gpu.any() and not gpu.all():
        return False
    ext = reqs.copy()
    ext[:, [CPU, MEMORY, GPU, PODS]] = 0
    used = ext > 0
    return bool((used == used[0]).all())


def _representor_counts(reqs: np.ndarray, avail: np.ndarray, nodes: np.ndarray, n_tasks: int) -> np.ndarray:
    """Per node of ``nodes``: how many copies of the largest request fit on idle + releasing."""
    top = reqs.max(axis=0)
    cols = [c for c in np.flatnonzero(top > 0) if not (c == PODS and top[c] <= 1)]
    if not cols:
        return np.full(len(nodes), float(n_tasks))
    top_cols = np.flatnonzero(top > 0)
    counts = np.full(len(nodes), np.inf)
    for c in top_cols:
        counts = np.minimum(counts, np.floor(avail[c, nodes] / top[c] + _EPS))
    return np.maximum(counts, 0.0)


def _fmt(v: float, col: int) -> str:
    if col == CPU:
        return f"{v / 1000:g}"
    if col == MEMORY:
        return f"{v / 2**30:.3g}Gi"
    return f"{v:g}"
