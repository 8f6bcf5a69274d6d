"""Inter-pod affinity / anti-affinity (kai.plugins.podaffinity) through ``kai simulate``'s path.

Scenario tables (nodes, pods in; placements and reasons out), the symmetry rules, runs and
gangs counting their own pods, preemption freeing an anti-affinity conflict, then a property:
over random clusters no placement breaks a filter, as judged by the independent checker
kai.testing.kube_filters.
"""
from __future__ import annotations

import os
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import bindings, flatten, job, node, queue, simulate_docs, unschedulable  # noqa: E402

from kai.api.k8s import Node, Pod  # noqa: E402
from kai.testing.kube_filters import violations  # noqa: E402

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def anti(app, key=HOST, **term):
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key, **term}]}}


def aff(app, key=ZONE, **term):
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key, **term}]}}


def pref(kind, app, weight, key=HOST):
    return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": weight, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}}]}}


def zone_nodes(*zones, gpu=0):
    return [node(f"n{i}", gpu=gpu, labels={ZONE: z} if z else {}) for i, z in enumerate(zones)]


SCENARIOS = [
    dict(id="anti-affinity-to-a-pod-placed-earlier-in-the-same-cycle",
         # the first pod states nothing (its binding may be filed with the action's batch);
         # the second's anti-affinity must still see it on the one node
         docs=[zone_nodes("a"), queue("q"), job("p0", labels={"app": "a"}),
               job("p1", labels={"app": "a"}, affinity=anti("a"))],
         bound={"default/p0-0": "n0"}, reasons={"default/p1": ["didn't match pod anti-affinity rules"]}),
    dict(id="affinity-to-a-pod-placed-earlier-in-the-same-cycle",
         docs=[zone_nodes("a", "b"), queue("q"), job("p0", labels={"app": "a"}, node_selector={ZONE: "b"}),
               job("p1", affinity=aff("a"))],
         bound={"default/p0-0": "n1", "default/p1-0": "n1"}),
    dict(id="issue-repro-three-replicas-two-nodes",
         docs=[zone_nodes("a", "b"), queue("q")] + [job(f"web{i}", labels={"app": "web"}, affinity=anti("web"))
                                                    for i in range(3)],
         bound={"default/web0-0": "n0", "default/web1-0": "n1"},
         reasons={"default/web2": ["2 node(s) didn't match pod anti-affinity rules"]}),
    dict(id="one-gang-with-self-anti-affinity-places-one-per-node-or-nothing",
         docs=[zone_nodes("a", "b"), queue("q"), job("g", pods=3, labels={"app": "g"}, affinity=anti("g"))],
         bound={}, reasons={"default/g": ["didn't match pod anti-affinity rules"]}),
    dict(id="gang-of-two-fits-two-nodes",
         docs=[zone_nodes("a", "b"), queue("q"), job("g", pods=2, labels={"app": "g"}, affinity=anti("g"))],
         bound={"default/g-0": "n0", "default/g-1": "n1"}),
    dict(id="anti-affinity-to-a-running-pod-on-zone",
         docs=[zone_nodes("a", "a", "b"), queue("q"),
               job("db", labels={"app": "db"}, running_on=["n0"]),
               job("web", labels={"app": "web"}, affinity=anti("db", ZONE))],
         bound={"default/web-0": "n2"}),
    dict(id="node-without-the-key-passes-anti-affinity",
         docs=[zone_nodes("a", ""), queue("q"), job("db", labels={"app": "db"}, running_on=["n0"]),
               job("web", affinity=anti("db", ZONE))],
         bound={"default/web-0": "n1"}),
    dict(id="existing-pods-anti-affinity-applies-to-the-incoming-pod",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("db", labels={"app": "db"}, running_on=["n0"], affinity=anti("web", ZONE)),
               job("web", labels={"app": "web"})],
         bound={"default/web-0": "n1"}),
    dict(id="existing-anti-affinity-everywhere-leaves-the-pod-pending",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("db", pods=2, labels={"app": "db"}, running_on=["n0", "n1"], affinity=anti("web", ZONE),
                   priority_class="build"),
               job("web", labels={"app": "web"})],
         bound={}, reasons={"default/web": ["2 node(s) didn't satisfy existing pods anti-affinity rules"]}),
    dict(id="consolidation-moves-a-preemptible-blocker-and-the-pod-waits-for-it",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("db", pods=2, min_member=1, labels={"app": "db"}, running_on=["n0", "n1"],
                   affinity=anti("web", ZONE)),
               job("web", labels={"app": "web"})],
         bound={}, moved_one_of={"default/db-0", "default/db-1"}),
    dict(id="affinity-follows-the-matching-pod-zone",
         docs=[zone_nodes("a", "b", "b"), queue("q"), job("cache", labels={"app": "cache"}, running_on=["n0"]),
               job("web", affinity=aff("cache"))],
         bound={"default/web-0": "n0"}),
    dict(id="affinity-without-a-matching-pod-waits",
         docs=[zone_nodes("a", "b"), queue("q"), job("web", affinity=aff("cache"))],
         bound={}, reasons={"default/web": ["2 node(s) didn't match pod affinity rules"]}),
    dict(id="self-affine-gang-bootstraps-then-follows-its-first-pod",
         docs=[zone_nodes("a", "b", "a", "b"), queue("q"),
               job("ring", pods=4, labels={"app": "ring"}, affinity=aff("ring"), cpu="40")],
         same_zone=["default/ring-0", "default/ring-1", "default/ring-2", "default/ring-3"], n_bound=0,
         reasons={"default/ring": ["pod affinity"]}),
    dict(id="self-affine-gang-fits-in-one-zone",
         docs=[zone_nodes("a", "b", "a", "b"), queue("q"),
               job("ring", pods=4, labels={"app": "ring"}, affinity=aff("ring"), cpu="30")],
         same_zone=["default/ring-0", "default/ring-1", "default/ring-2", "default/ring-3"], n_bound=4),
    dict(id="namespaces-default-to-the-pods-own",
         docs=[zone_nodes("a", "b"), queue("q"), job("db", ns="other", labels={"app": "db"}, running_on=["n0"]),
               job("web", affinity=anti("db", ZONE))],
         bound={"default/web-0": "n0"}),
    dict(id="explicit-namespaces-reach-other-namespaces",
         docs=[zone_nodes("a", "b"), queue("q"), job("db", ns="other", labels={"app": "db"}, running_on=["n0"]),
               job("web", affinity=anti("db", ZONE, namespaces=["other"]))],
         bound={"default/web-0": "n1"}),
    dict(id="empty-namespace-selector-means-every-namespace",
         docs=[zone_nodes("a", "b"), queue("q"), job("db", ns="other", labels={"app": "db"}, running_on=["n0"]),
               job("web", affinity=anti("db", ZONE, namespaceSelector={}))],
         bound={"default/web-0": "n1"}),
    dict(id="namespace-selector-by-namespace-labels",
         docs=[zone_nodes("a", "b"), queue("q"),
               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"tier": "db"}}},
               job("db", ns="team", labels={"app": "db"}, running_on=["n0"]),
               job("web", affinity=anti("db", ZONE, namespaceSelector={"matchLabels": {"tier": "db"}}))],
         bound={"default/web-0": "n1"}),
    dict(id="match-label-keys-scope-the-term-to-the-pods-own-value",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("old", labels={"app": "web", "rev": "1"}, running_on=["n0"]),
               job("new", labels={"app": "web", "rev": "2"}, affinity=anti("web", ZONE, matchLabelKeys=["rev"]))],
         bound={"default/new-0": "n0"}),
    dict(id="mismatch-label-keys-exclude-the-pods-own-value",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("same", labels={"app": "web", "team": "x"}, running_on=["n0"]),
               job("other", labels={"app": "web", "team": "y"}, running_on=["n1"]),
               job("new", labels={"app": "web", "team": "x"},
                   affinity=anti("web", ZONE, mismatchLabelKeys=["team"]))],
         bound={"default/new-0": "n0"}),
    dict(id="preferred-anti-affinity-spreads-without-blocking",
         docs=[zone_nodes("a", "b"), queue("q"), job("x", labels={"app": "x"}, running_on=["n0"]),
               job("y", affinity=pref("podAntiAffinity", "x", 100))],
         bound={"default/y-0": "n1"}),
    dict(id="preferred-affinity-pulls-against-binpack",
         docs=[zone_nodes("a", "b"), queue("q"), job("x", labels={"app": "x"}, running_on=["n1"]),
               job("fill", running_on=["n0"], cpu="30"),
               job("y", affinity=pref("podAffinity", "x", 10))],
         bound={"default/y-0": "n1"}),
    dict(id="existing-preferred-anti-affinity-pushes-the-incoming-pod-away",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("x", labels={"app": "x"}, running_on=["n0"], affinity=pref("podAntiAffinity", "y", 50)),
               job("fill", running_on=["n1"], cpu="1"),
               job("y", labels={"app": "y"})],
         bound={"default/y-0": "n1"}),
    dict(id="terminating-pods-still-count-for-anti-affinity",
         docs=[zone_nodes("a", "b"), queue("q"),
               job("old", labels={"app": "web"}, running_on=["n0"], deleting=True),
               job("web", labels={"app": "web"}, affinity=anti("web"))],
         bound={"default/web-0": "n1"}),
    dict(id="invalid-selector-operator-waits-with-the-reason",
         docs=[zone_nodes("a"), queue("q"),
               job("bad", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                   {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}]},
                    "topologyKey": HOST}]}})],
         bound={}, reasons={"default/bad": ["operator 'Near'"]}),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[c["id"] for c in SCENARIOS])
def test_scenario(case):
    rep = simulate_docs(case["docs"])
    got = bindings(rep)
    if "bound" in case:
        assert got == case["bound"]
    if "pipelined" in case:
        assert set(rep["cycles"][0]["pipelined"]) == case["pipelined"]
    if "moved_one_of" in case:     # one blocker evicted and re-placed; the pod waits for it
        (moved,) = [e["pod"] for e in rep["cycles"][0]["evictions"]]
        assert moved in case["moved_one_of"]
        assert set(rep["cycles"][0]["pipelined"]) == {"default/web-0", moved}
    if "n_bound" in case:
        assert len(got) == case["n_bound"]
    if "same_zone" in case and got:
        zones = {("a" if got[p] in ("n0", "n2") else "b") for p in case["same_zone"]}
        assert len(zones) == 1
    reasons = unschedulable(rep)
    for group, needles in case.get("reasons", {}).items():
        for needle in needles:
            assert needle in reasons[group], reasons
    assert not violations(*_placements(case["docs"], rep))


def _placements(docs, rep):
    docs = flatten(docs)
    pods = {f"{d['metadata'].get('namespace', 'default')}/{d['metadata']['name']}": msgspec.convert(d, Pod)
            for d in docs if d["kind"] == "Pod"}
    nodes = [msgspec.convert(d, Node) for d in docs if d["kind"] == "Node"]
    running = [(p, p.spec.node_name) for p in pods.values() if p.spec.node_name]
    placed = [(pods[b["pod"]], b["node"]) for b in rep["cycles"][0]["bindings"]]
    return placed, nodes, running


def test_preemption_evicts_the_anti_affinity_blocker():
    # one node: a low-priority pod that the high-priority pod's anti-affinity excludes
    docs = [zone_nodes("a"), queue("q"),
            job("low", labels={"app": "low"}, running_on=["n0"], priority_class="train"),
            job("high", affinity=anti("low"), priority_class="build")]
    rep = simulate_docs(docs, cycles=1)
    ev = {e["pod"] for e in rep["cycles"][0]["evictions"]}
    assert ev == {"default/low-0"}
    assert "default/high-0" in rep["cycles"][0]["pipelined"]


# ------------------------------------------------------------------------- property
@st.composite
def clusters(draw):
    n_nodes = draw(st.integers(1, 5))
    zones = [draw(st.sampled_from(["a", "b", "c", ""])) for _ in range(n_nodes)]
    docs = [zone_nodes(*zones), queue("q")]
    apps = ["a", "b"]
    running = draw(st.integers(0, 3))
    for i in range(running):
        docs.append(job(f"r{i}", labels={"app": draw(st.sampled_from(apps))},
                        running_on=[f"n{draw(st.integers(0, n_nodes - 1))}"], cpu="1"))
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["anti", "aff", "spread", "port", "none", "existing-anti"]))
        key = draw(st.sampled_from([HOST, ZONE]))
        app = draw(st.sampled_from(apps))
        kw = dict(labels={"app": draw(st.sampled_from(apps))})
        if kind == "anti":
            kw["affinity"] = anti(app, key)
        elif kind == "aff":
            kw["affinity"] = aff(app, key)
        elif kind == "existing-anti":
            kw["affinity"] = anti(draw(st.sampled_from(apps)), key)
        elif kind == "spread":
            kw["extra_spec"] = {"topologySpreadConstraints": [
                {"maxSkew": draw(st.integers(1, 2)), "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"app": app}}}]}
        elif kind == "port":
            kw["ports"] = [{"containerPort": 80, "hostPort": draw(st.sampled_from([80, 81]))}]
        docs.append(job(f"p{i}", pods=draw(st.integers(1, 3)), cpu="1", **kw))
    return docs


@settings(max_examples=int(os.environ.get("KAI_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_no_placement_breaks_a_pod_constraint(docs):
    rep = simulate_docs(docs)
    assert violations(*_placements(docs, rep)) == [], _describe(docs, rep)


def _describe(docs, rep) -> str:
    lines = []
    for d in flatten(docs):
        if d["kind"] in ("Pod", "Node"):
            spec = d["spec"]
            lines.append(f"{d['kind']} {d['metadata']['name']} {d['metadata'].get('labels')} "
                         f"{spec.get('nodeName', '')} {spec.get('affinity', '')} "
                         f"{spec.get('topologySpreadConstraints', '')} "
                         f"{spec['containers'][0].get('ports', '') if d['kind'] == 'Pod' else ''}")
    c = rep["cycles"][0]
    lines.append(f"bindings {c['bindings']} evictions {c['evictions']} pipelined {c['pipelined']}")
    return "\n".join(lines)
