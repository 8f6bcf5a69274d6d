"""Inter-pod affinity and anti-affinity (kube-scheduler's InterPodAffinity, run by KAI as a
predicate and scored by KAI's ``podaffinity`` plugin).

Filter (registered by ``predicates``; ``InterPodAffinity``), for an incoming pod P:

- P's required affinity terms: a node passes when, for every term, its domain (node label
  ``topologyKey``) holds a pod that matches *all* of P's affinity terms; the node must carry
  every term's key. When no pod anywhere matches them and P matches them all itself, P may go
  to any node carrying the keys (the first pod of a self-affine group).
- P's required anti-affinity terms: a node fails when its domain holds a pod matching the term.
- existing pods' required anti-affinity: a node fails when its domain (per the existing term's
  key) holds a pod whose term matches P (symmetry).

Score (``podaffinity``; ``InterPodAffinityScore``): per node, KAI's raw InterPodAffinity score
times ``K8sPlugins`` (10^5, unnormalized as KAI adds it): + weight per pod in the node's domain
matching P's preferred affinity terms, - weight for its preferred anti-affinity terms, and the
same for existing pods whose preferred terms match P, + 1 (hardPodAffinityWeight) for existing
pods whose required affinity terms match P.

All of it becomes topology-domain constraints (kai._fast.domains) over counts kept by
kai.framework.pod_counts, so pods placed earlier in the same gang, Statement or cycle count,
are undone with them, and a run of identical pods is one kernel call.
"""
from __future__ import annotations

from kai._fast.domains import KIND_AFFINITY, KIND_ANTI, KIND_SCORE
from kai.cache.pod_table import PREFERRED_AFFINITY, PREFERRED_ANTI, REQUIRED_AFFINITY, REQUIRED_ANTI
from kai.framework.plugin import Plugin, register_plugin
from kai.framework.pod_counts import PodCounts
from kai.framework.predicate import NodePredicate

K8S_PLUGINS_SCORE = 100000.0        # KAI scores.K8sPlugins
HARD_POD_AFFINITY_WEIGHT = 1        # kube-scheduler's default InterPodAffinityArgs

AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"


class _Terms(NodePredicate):
    """What the filter and the score share: P's own terms and the carried terms matching P."""

    #: applies: P's own terms, and the terms carried at the predicate epoch that match P's
    #: namespace (and its labels) and labels
    alike_stable = True
    #: the pod's labels are read only against carried terms, which exist only past epoch (0, 0)
    label_blind = True

    def __init__(self, ssn) -> None:
        self.ssn = ssn
        self.table = ssn.state.pod_table
        self._carried: dict[tuple, list] = {}
        self._by_uid: dict[tuple, list] = {}

    def counts(self) -> PodCounts:
        return PodCounts.of(self.ssn)

    def ns_labels(self, task):
        return self.ssn.state.namespaces.get(task.namespace)

    def carried_matching(self, task, kinds) -> list:
        """Distinct terms existing pods carry, of ``kinds``, that match ``task``."""
        pc = self.ssn.pod_counts
        version = pc.terms_version if pc is not None else 0
        quick = (task.uid, kinds, version)
        got = self._by_uid.get(quick)
        if got is not None:
            return got
        key = (task.namespace, tuple(sorted(task.pod.metadata.labels.items())), kinds, version)
        got = self._carried.get(key)
        if got is None:
            labels = task.pod.metadata.labels
            nsl = self.ns_labels(task)
            terms = pc.carried_terms() if pc is not None else self.table.terms.values()
            got = [ct for ct in terms if ct.kind in kinds and ct.term.matches(task.namespace, labels, nsl)]
            self._carried[key] = got
        self._by_uid[quick] = got
        return got

    def _any_terms(self) -> bool:
        pc = self.ssn.pod_counts
        return bool(self.table.terms) or (pc is not None and pc.terms_version > 0)

    def own_match(self, task, term) -> bool:
        return term.matches(task.namespace, task.pod.metadata.labels, self.ns_labels(task))

    def term_entry(self, term):
        pc = self.counts()
        return pc.entry(("match", term.key), term.topology_key, pc.term_matcher(term),
                        rows=lambda: pc.term_rows(term), hint=pc.label_hint(term.selector))

    def carried_entry(self, ct):
        """Carriers of the existing term ``ct`` per domain of its key; a pod placed in the
        session counts when it carries the same term."""
        return self.counts().entry(("carried", ct.kind, ct.weight, ct.term.key), ct.term.topology_key,
                                   lambda task: self.carries(task, ct), per_node=dict(ct.nodes),
                                   hint=("carry", ct.kind, ct.weight, ct.term.key))

    def carries(self, task, ct) -> bool:
        c = task.constraints
        if c is None:
            return False
        items = {REQUIRED_ANTI: [(0, t) for t in c.anti_affinity],
                 REQUIRED_AFFINITY: [(0, t) for t in c.affinity],
                 PREFERRED_AFFINITY: c.preferred_affinity, PREFERRED_ANTI: c.preferred_anti}[ct.kind]
        return any(w == ct.weight and t.key == ct.term.key for w, t in items)


class InterPodAffinity(_Terms):
    name = "InterPodAffinity"

    def applies(self, task) -> bool:
        c = task.constraints
        if c is not None and (c.affinity or c.anti_affinity):
            return True
        return self._any_terms() and bool(self.carried_matching(task, (REQUIRED_ANTI,)))

    def run_key(self, task):
        c = task.constraints
        bits = ()
        if c is not None:
            bits = tuple(self.own_match(task, t) for t in c.affinity + c.anti_affinity)
        return (c.key if c is not None else None, bits,
                tuple(id(ct) for ct in self.carried_matching(task, (REQUIRED_ANTI,))))

    def domain_constraints(self, task, job):
        c = task.constraints
        specs: list[dict] = []
        boot = False
        if c is not None and c.affinity:
            terms = c.affinity
            pc = self.counts()
            keys = tuple(t.key for t in terms)
            boot = all(self.own_match(task, t) for t in terms)

            def rows():
                m = pc.term_rows(terms[0])
                for t in terms[1:]:
                    m = m & pc.term_rows(t)
                return m

            matchers = [pc.term_matcher(t) for t in terms]
            for t in terms:
                e = pc.entry(("match-all", keys, t.topology_key), t.topology_key,
                             lambda x, ms=matchers: all(m(x) for m in ms), rows=rows,
                             hint=pc.label_hint(terms[0].selector))
                specs.append(dict(dom=e.dom, counts=e.counts, releasing=e.releasing, arriving=e.arriving, kind=KIND_AFFINITY,
                                  self_inc=boot,
                                  reason=AFFINITY_REASON))
        if c is not None:
            for t in c.anti_affinity:
                e = self.term_entry(t)
                specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_ANTI, releasing=e.releasing, self_inc=self.own_match(task, t),
                                  reason=ANTI_REASON))
        for ct in self.carried_matching(task, (REQUIRED_ANTI,)):
            e = self.carried_entry(ct)
            specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_ANTI, releasing=e.releasing, self_inc=self.carries(task, ct),
                              reason=EXISTING_ANTI_REASON))
        return specs, boot


class InterPodAffinityScore(_Terms):
    name = "InterPodAffinityScore"
    _CARRIED = (REQUIRED_AFFINITY, PREFERRED_AFFINITY, PREFERRED_ANTI)

    def applies(self, task) -> bool:
        c = task.constraints
        if c is not None and (c.preferred_affinity or c.preferred_anti):
            return True
        return self._any_terms() and bool(self.carried_matching(task, self._CARRIED))

    def run_key(self, task):
        c = task.constraints
        bits = ()
        if c is not None:
            bits = tuple(self.own_match(task, t) for _, t in c.preferred_affinity + c.preferred_anti)
        return (c.key if c is not None else None, bits,
                tuple(id(ct) for ct in self.carried_matching(task, self._CARRIED)))

    def domain_constraints(self, task, job):
        c = task.constraints
        specs: list[dict] = []
        if c is not None:
            for sign, items in ((1.0, c.preferred_affinity), (-1.0, c.preferred_anti)):
                for w, t in items:
                    e = self.term_entry(t)
                    specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_SCORE,
                                      weight=sign * w * K8S_PLUGINS_SCORE, self_inc=self.own_match(task, t)))
        for ct in self.carried_matching(task, self._CARRIED):
            e = self.carried_entry(ct)
            w = {REQUIRED_AFFINITY: HARD_POD_AFFINITY_WEIGHT, PREFERRED_AFFINITY: ct.weight,
                 PREFERRED_ANTI: -ct.weight}[ct.kind]
            specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_SCORE, weight=w * K8S_PLUGINS_SCORE,
                              self_inc=self.carries(task, ct)))
        return specs, False


@register_plugin
class PodAffinity(Plugin):
    """KAI's ``podaffinity``: the InterPodAffinity score (the filter is always on, in predicates)."""
    name = "podaffinity"

    def on_session_open(self, ssn) -> None:
        ssn.node_predicates.append(InterPodAffinityScore(ssn))


__all__ = ["InterPodAffinity", "InterPodAffinityScore", "PodAffinity", "K8S_PLUGINS_SCORE"]
