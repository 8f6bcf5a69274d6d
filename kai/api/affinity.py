"""A pod's inter-pod constraints, compiled once: affinity / anti-affinity terms, topology
spread constraints and host ports, with kube-scheduler's semantics.

- ``Term``: label selector + namespaces + namespaceSelector + topology key. Its namespaces are
  resolved against the pod that states it (none given and no namespaceSelector: the pod's own
  namespace). ``matchLabelKeys`` / ``mismatchLabelKeys`` are merged into the selector as the
  API server merges them at pod creation (``key in (value)`` / ``key notin (value)`` for each
  key the pod carries), so manifests read by ``kai simulate`` mean what they mean live; a
  selector merged twice is unchanged in meaning.
- ``Spread``: one topologySpreadConstraint; matchLabelKeys merged as kube-scheduler merges
  them; minDomains defaults to 1, nodeAffinityPolicy to Honor, nodeTaintsPolicy to Ignore.
- ``HostPort``: (hostIP, protocol, port) of containers and restartable init containers;
  hostIP "" is 0.0.0.0 and protocol "" is TCP (kube-scheduler's sanitizing).

``PodConstraints.of(pod)`` returns None for a pod with none of these (the common case, which
keeps the fast paths). Raises SelectorError for a selector Kubernetes would refuse.
"""
from __future__ import annotations

from kai.api.k8s import LabelSelector, Pod, PodAffinityTerm
from kai.api.selectors import NOTHING, Selector, SelectorError, compile_selector

HOSTNAME = "kubernetes.io/hostname"
WILDCARD_IP = "0.0.0.0"


class Term:
    """One (anti-)affinity term, resolved against the namespace of the pod stating it."""

    __slots__ = ("selector", "namespaces", "ns_selector", "topology_key", "key")

    def __init__(self, selector: Selector, namespaces: frozenset[str], ns_selector: Selector,
                 topology_key: str) -> None:
        self.selector = selector
        self.namespaces = namespaces
        self.ns_selector = ns_selector
        self.topology_key = topology_key
        self.key = (selector.key, tuple(sorted(namespaces)), ns_selector.key, topology_key)

    def matches(self, namespace: str, labels: dict[str, str], ns_labels: dict[str, str] | None) -> bool:
        """kube-scheduler's AffinityTerm.Matches: the pod's namespace is listed, or its labels
        (``ns_labels``; None = no Namespace object, i.e. no labels) match the namespaceSelector;
        then the label selector."""
        if namespace not in self.namespaces:
            if self.ns_selector.nothing or not self.ns_selector.matches(ns_labels or {}):
                return False
        return self.selector.matches(labels)

    def __eq__(self, other) -> bool:
        return isinstance(other, Term) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Term({self.topology_key}, ns={sorted(self.namespaces)}, {self.selector})"


def _term(pod: Pod, t: PodAffinityTerm) -> Term:
    sel = compile_selector(t.label_selector)
    labels = pod.metadata.labels
    if (t.match_label_keys or t.mismatch_label_keys) and t.label_selector is not None:
        extra = [(k, "In", frozenset([labels[k]])) for k in t.match_label_keys if k in labels]
        extra += [(k, "NotIn", frozenset([labels[k]])) for k in t.mismatch_label_keys if k in labels]
        sel = sel.with_requirements(extra)
    ns = pod.metadata.namespace or "default"
    if not t.namespaces and t.namespace_selector is None:
        namespaces = frozenset([ns])
    else:
        namespaces = frozenset(t.namespaces)
    ns_sel = compile_selector(t.namespace_selector) if t.namespace_selector is not None else NOTHING
    if not t.topology_key:
        raise SelectorError("pod affinity term without a topologyKey")
    return Term(sel, namespaces, ns_sel, t.topology_key)


class Spread:
    """One topologySpreadConstraint (``hard``: DoNotSchedule)."""

    __slots__ = ("max_skew", "topology_key", "selector", "min_domains", "honor_affinity", "honor_taints",
                 "hard", "key")

    def __init__(self, max_skew, topology_key, selector, min_domains, honor_affinity, honor_taints, hard):
        self.max_skew = max_skew
        self.topology_key = topology_key
        self.selector = selector
        self.min_domains = min_domains
        self.honor_affinity = honor_affinity
        self.honor_taints = honor_taints
        self.hard = hard
        self.key = (max_skew, topology_key, selector.key, min_domains, honor_affinity, honor_taints, hard)


def _spread(pod: Pod, c) -> Spread:
    if c.max_skew < 1:
        raise SelectorError(f"topologySpreadConstraint on {c.topology_key!r}: maxSkew must be >= 1")
    if not c.topology_key:
        raise SelectorError("topologySpreadConstraint without a topologyKey")
    if c.when_unsatisfiable not in ("DoNotSchedule", "ScheduleAnyway"):
        raise SelectorError(f"topologySpreadConstraint on {c.topology_key!r}: whenUnsatisfiable "
                            f"{c.when_unsatisfiable!r} is not DoNotSchedule or ScheduleAnyway")
    for name, v in (("nodeAffinityPolicy", c.node_affinity_policy), ("nodeTaintsPolicy", c.node_taints_policy)):
        if v is not None and v not in ("Honor", "Ignore"):
            raise SelectorError(f"topologySpreadConstraint {name} {v!r} is not Honor or Ignore")
    if c.min_domains is not None and (c.min_domains < 1 or c.when_unsatisfiable != "DoNotSchedule"):
        raise SelectorError("topologySpreadConstraint minDomains must be >= 1 and only with DoNotSchedule")
    sel = compile_selector(c.label_selector)
    labels = pod.metadata.labels
    if c.match_label_keys and c.label_selector is not None:
        extra = [(k, "In", frozenset([labels[k]])) for k in c.match_label_keys if k in labels]
        sel = sel.with_requirements(extra)
    return Spread(int(c.max_skew), c.topology_key, sel, int(c.min_domains or 1),
                  (c.node_affinity_policy or "Honor") == "Honor", (c.node_taints_policy or "Ignore") == "Honor",
                  c.when_unsatisfiable == "DoNotSchedule")


def host_ports(pod: Pod) -> tuple[tuple[str, str, int], ...]:
    """(hostIP, protocol, port) the pod takes on its node, sanitized, sorted, unique."""
    out = set()
    spec = pod.spec
    for kind, cs in (("init", spec.init_containers), ("main", spec.containers)):
        for c in cs:
            if kind == "init" and c.restart_policy != "Always":
                continue
            for p in c.ports:
                if p.host_port > 0:
                    out.add((p.host_ip or WILDCARD_IP, (p.protocol or "TCP").upper(), int(p.host_port)))
    return tuple(sorted(out))


def declares_ports(spec) -> bool:
    """Whether any container declares a port (most pods: none, so no host ports to collect)."""
    for c in spec.containers:
        if c.ports:
            return True
    for c in spec.init_containers:
        if c.ports:
            return True
    return False


class PodConstraints:
    """Everything of a pod that ties its placement to other pods."""

    __slots__ = ("affinity", "anti_affinity", "preferred_affinity", "preferred_anti", "spread", "ports",
                 "key")

    def __init__(self, affinity=(), anti_affinity=(), preferred_affinity=(), preferred_anti=(), spread=(),
                 ports=()) -> None:
        self.affinity: tuple[Term, ...] = tuple(affinity)
        self.anti_affinity: tuple[Term, ...] = tuple(anti_affinity)
        self.preferred_affinity: tuple[tuple[int, Term], ...] = tuple(preferred_affinity)
        self.preferred_anti: tuple[tuple[int, Term], ...] = tuple(preferred_anti)
        self.spread: tuple[Spread, ...] = tuple(spread)
        self.ports: tuple[tuple[str, str, int], ...] = tuple(ports)
        self.key = (tuple(t.key for t in self.affinity), tuple(t.key for t in self.anti_affinity),
                    tuple((w, t.key) for w, t in self.preferred_affinity),
                    tuple((w, t.key) for w, t in self.preferred_anti),
                    tuple(s.key for s in self.spread), self.ports)

    @property
    def has_terms(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti)

    @staticmethod
    def of(pod: Pod) -> "PodConstraints | None":
        spec = pod.spec
        aff = spec.affinity
        pa = aff.pod_affinity if aff is not None else None
        pn = aff.pod_anti_affinity if aff is not None else None
        ports = host_ports(pod) if declares_ports(spec) else ()
        if pa is None and pn is None and not spec.topology_spread_constraints and not ports:
            return None
        req_a = [_term(pod, t) for t in (pa.required_during_scheduling_ignored_during_execution if pa else ())]
        req_n = [_term(pod, t) for t in (pn.required_during_scheduling_ignored_during_execution if pn else ())]
        pref_a = [(int(w.weight), _term(pod, w.pod_affinity_term))
                  for w in (pa.preferred_during_scheduling_ignored_during_execution if pa else ())]
        pref_n = [(int(w.weight), _term(pod, w.pod_affinity_term))
                  for w in (pn.preferred_during_scheduling_ignored_during_execution if pn else ())]
        for w, _ in pref_a + pref_n:
            if not 1 <= w <= 100:
                raise SelectorError(f"preferred pod affinity weight {w} outside 1..100")
        spread = [_spread(pod, c) for c in spec.topology_spread_constraints]
        if not (req_a or req_n or pref_a or pref_n or spread or ports):
            return None
        return PodConstraints(req_a, req_n, pref_a, pref_n, spread, ports)


__all__ = ["Term", "Spread", "PodConstraints", "host_ports", "declares_ports", "HOSTNAME", "WILDCARD_IP", "LabelSelector"]
