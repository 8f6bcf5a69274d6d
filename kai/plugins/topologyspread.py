"""Pod topology spread (kube-scheduler's PodTopologySpread; KAI has none, kube-scheduler users
rely on it). Registered by ``predicates``.

For each of a pod's ``topologySpreadConstraints`` (kai.api.affinity.Spread):

- the pods that count: same namespace as the pod, matching the constraint's selector
  (matchLabelKeys merged), not terminating, on an *eligible* node: one that carries every
  constraint's topology key (of that kind: hard or soft) and passes the inclusion policies
  (nodeAffinityPolicy Honor: the pod's nodeSelector / required node affinity; nodeTaintsPolicy
  Honor: its tolerations); an empty selector counts nobody, as in kube-scheduler;
- DoNotSchedule: a node passes when it carries the key and
  ``count(its domain) + (1 if the pod matches) - min(count over eligible domains) <= maxSkew``,
  the minimum taken as 0 while fewer than ``minDomains`` domains are eligible;
- ScheduleAnyway: kube-scheduler's score (count x log(#domains + 2) + maxSkew - 1, normalized to
  0..100 with fewer pods better), scaled into KAI's K8sPlugins band (100 = one K8sPlugins unit).

No cluster default constraints are applied (kube-scheduler's system defaults are only soft
preferences; kai has none configured). Evaluated by the placement kernel (kai._fast.domains)
over counts kept by kai.framework.pod_counts.
"""
from __future__ import annotations

import numpy as np

from kai._fast.domains import KIND_SPREAD, KIND_SPREAD_SCORE
from kai.framework.pod_counts import PodCounts
from kai.framework.predicate import NodePredicate
from kai.plugins.podaffinity import K8S_PLUGINS_SCORE

SPREAD_REASON = "node(s) didn't match pod topology spread constraints"
MISSING_KEY_REASON = "node(s) didn't match pod topology spread constraints (missing required label)"


class TopologySpread(NodePredicate):
    alike_stable = True         # applies: the pod's spread constraints
    label_blind = True          # (its labels count only for a pod with constraints, which applies)
    name = "PodTopologySpread"

    def __init__(self, ssn) -> None:
        self.ssn = ssn
        self._elig: dict[tuple, np.ndarray] = {}

    def applies(self, task) -> bool:
        c = task.constraints
        return c is not None and bool(c.spread)

    def run_key(self, task):
        c = task.constraints
        return (c.key, task.namespace, tuple(s.selector.matches(task.pod.metadata.labels) for s in c.spread))

    def eligible(self, task, constraints, s) -> np.ndarray:
        """uint8[N]: nodes whose pods count for ``s`` (all keys of ``constraints``, policies)."""
        keys = tuple(sorted({x.topology_key for x in constraints}))
        key = (keys, s.honor_affinity, s.honor_taints, task.signature if (s.honor_affinity or s.honor_taints) else None)
        got = self._elig.get(key)
        if got is None:
            pc = PodCounts.of(self.ssn)
            table = self.ssn.state.nodes
            n = pc.n_nodes
            m = table.in_use[:n].astype(bool)
            for k in keys:
                m &= pc.domains(k)[0] >= 0
            if s.honor_affinity:
                m &= table.selector_mask(task.pod)[:n]
            if s.honor_taints:
                m &= table.taint_mask(task.pod)[0][:n]
            got = self._elig[key] = np.ascontiguousarray(m, dtype=np.uint8)
        return got

    def domain_constraints(self, task, job):
        pc = PodCounts.of(self.ssn)
        t = pc.table
        labels = task.pod.metadata.labels
        ns = task.namespace
        specs = []
        for hard in (True, False):
            group = [s for s in task.constraints.spread if s.hard == hard]
            for s in group:
                elig = self.eligible(task, group, s)
                sel = s.selector

                def rows(sel=sel):
                    if sel.everything:            # kube-scheduler counts nobody for an empty selector
                        return np.zeros(t.n, dtype=bool)
                    return t.rows_in_namespaces([ns]) & (t.terminating[: t.n] == 0) & t.rows_matching(sel)

                def matcher(x, sel=sel):
                    return x.namespace == ns and not x.deleting and sel.matches(x.pod.metadata.labels)

                e = pc.entry(("spread", s.key, ns, elig.tobytes() if hard else ("soft", elig.tobytes())),
                             s.topology_key, matcher, rows=rows, node_ok=elig, hint=pc.label_hint(sel))
                self_inc = sel.matches(labels)
                if hard:
                    dom_elig = np.zeros(e.counts.shape[0], dtype=np.uint8)
                    d = e.dom[elig.astype(bool)]
                    dom_elig[d[d >= 0]] = 1
                    specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_SPREAD, releasing=e.releasing, self_inc=self_inc,
                                      max_skew=s.max_skew, min_domains=s.min_domains, elig=elig,
                                      dom_elig=dom_elig, reason=SPREAD_REASON))
                else:
                    specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_SPREAD_SCORE, self_inc=self_inc,
                                      max_skew=s.max_skew, elig=elig, weight=K8S_PLUGINS_SCORE / 100.0))
        return specs, False
