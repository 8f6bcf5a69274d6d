"""An independent, readable checker of kube-scheduler's pod-to-pod filters, for tests.

Written from kube-scheduler's semantics (InterPodAffinity, PodTopologySpread, NodePorts) with
plain loops over manifests, sharing no code with kai's placement path beyond the model
(kai.api.affinity's parsing). ``violations(placements, nodes)`` replays placements in order
and names every one that a filter would have rejected given the pods placed before it: the
property tests run it on kai's decisions, the e2e differential on both schedulers' bindings.
"""
from __future__ import annotations


from kai.api.affinity import PodConstraints, WILDCARD_IP
from kai.api.k8s import Node, Pod


def _labels(node: Node) -> dict[str, str]:
    labels = dict(node.metadata.labels)
    labels.setdefault("kubernetes.io/hostname", node.metadata.name)
    return labels


def _ns(pod: Pod) -> str:
    return pod.metadata.namespace or "default"


def _matches(term, pod: Pod, namespaces: dict) -> bool:
    return term.matches(_ns(pod), pod.metadata.labels, namespaces.get(_ns(pod)))


def _node_affinity_ok(pod: Pod, labels: dict[str, str]) -> bool:
    """nodeSelector + required node affinity (labels only), for the spread inclusion policy."""
    for k, v in pod.spec.node_selector.items():
        if labels.get(k) != v:
            return False
    na = pod.spec.affinity.node_affinity if pod.spec.affinity else None
    req = na.required_during_scheduling_ignored_during_execution if na else None
    if req is None:
        return True
    for term in req.node_selector_terms:
        if not term.match_expressions:
            continue
        ok = True
        for e in term.match_expressions:
            v = labels.get(e.key)
            if e.operator == "In":
                ok &= v is not None and v in e.values
            elif e.operator == "NotIn":
                ok &= v is None or v not in e.values
            elif e.operator == "Exists":
                ok &= v is not None
            elif e.operator == "DoesNotExist":
                ok &= v is None
            else:
                try:
                    num = int(v) if v is not None else None
                    ok &= num is not None and (num > int(e.values[0]) if e.operator == "Gt" else num < int(e.values[0]))
                except ValueError:
                    ok = False
        if ok:
            return True
    return False


def check(pod: Pod, node: Node, placed: list[tuple[Pod, Node]], nodes: list[Node],
          namespaces: dict | None = None) -> list[str]:
    """Why ``pod`` may not go to ``node`` given ``placed`` (pods already on nodes)."""
    namespaces = namespaces or {}
    out = []
    nl = _labels(node)
    pc = PodConstraints.of(pod)
    # existing pods' required anti-affinity
    for other, on in placed:
        oc = PodConstraints.of(other)
        if oc is None:
            continue
        ol = _labels(on)
        for t in oc.anti_affinity:
            if t.topology_key in nl and ol.get(t.topology_key) == nl[t.topology_key] and _matches(t, pod, namespaces):
                out.append(f"existing pod {other.metadata.name}'s anti-affinity ({t.topology_key})")
    if pc is not None:
        # own required affinity: a pod matching all terms in the domain of each term
        if pc.affinity:
            if any(t.topology_key not in nl for t in pc.affinity):
                out.append("node lacks an affinity topology key")
            else:
                all_match = [(o, on) for o, on in placed if all(_matches(t, o, namespaces) for t in pc.affinity)]
                found = all(any(_labels(on).get(t.topology_key) == nl[t.topology_key] for _, on in all_match)
                            for t in pc.affinity)
                bootstrap = not any(t.topology_key in _labels(on) for _, on in all_match for t in pc.affinity) and \
                    all(_matches(t, pod, namespaces) for t in pc.affinity)
                if not found and not bootstrap:
                    out.append("no pod matching the affinity terms in the node's domain")
        for t in pc.anti_affinity:
            if t.topology_key in nl and any(_matches(t, o, namespaces) and _labels(on).get(t.topology_key) ==
                                            nl[t.topology_key] for o, on in placed):
                out.append(f"anti-affinity ({t.topology_key})")
        hard = [s for s in pc.spread if s.hard]
        for s in hard:
            if s.topology_key not in nl:
                out.append(f"spread: node lacks {s.topology_key}")
                continue
            counts: dict[str, int] = {}
            for n in nodes:
                labels = _labels(n)
                if any(x.topology_key not in labels for x in hard):
                    continue
                if s.honor_affinity and not _node_affinity_ok(pod, labels):
                    continue
                if s.honor_taints and any(tt.effect in ("NoSchedule", "NoExecute") and not any(
                        (not tol.key and tol.operator == "Exists") or
                        (tol.key == tt.key and (tol.operator == "Exists" or tol.value == tt.value) and
                         (not tol.effect or tol.effect == tt.effect)) for tol in pod.spec.tolerations)
                        for tt in n.spec.taints):
                    continue
                v = labels[s.topology_key]
                counts.setdefault(v, 0)
                if s.selector.everything:
                    continue
                for o, on in placed:
                    if on.metadata.name == n.metadata.name and _ns(o) == _ns(pod) and \
                            o.metadata.deletion_timestamp is None and s.selector.matches(o.metadata.labels):
                        counts[v] += 1
            low = min(counts.values()) if counts and len(counts) >= s.min_domains else 0
            self_match = 1 if s.selector.matches(pod.metadata.labels) else 0
            if counts.get(nl[s.topology_key], 0) + self_match - low > s.max_skew:
                out.append(f"spread on {s.topology_key}: skew above {s.max_skew}")
        for ip, proto, port in pc.ports:
            for o, on in placed:
                oc = PodConstraints.of(o)
                if on.metadata.name != node.metadata.name or oc is None:
                    continue
                for oip, oproto, oport in oc.ports:
                    if oproto == proto and oport == port and (oip == ip or WILDCARD_IP in (oip, ip)):
                        out.append(f"host port {proto}/{port}")
    return out


def violations(placements: list[tuple[Pod, str]], nodes: list[Node], running: list[tuple[Pod, str]] = (),
               namespaces: dict | None = None) -> list[str]:
    """Replay ``placements`` (pod, node name) in order after ``running``; one line per
    placement a filter rejects."""
    by_name = {n.metadata.name: n for n in nodes}
    placed = [(p, by_name[n]) for p, n in running if n in by_name]
    out = []
    for pod, name in placements:
        node = by_name[name]
        why = check(pod, node, placed, nodes, namespaces)
        if why:
            out.append(f"{_ns(pod)}/{pod.metadata.name} on {name}: " + "; ".join(why))
        placed.append((pod, node))
    return out


__all__ = ["check", "violations"]
