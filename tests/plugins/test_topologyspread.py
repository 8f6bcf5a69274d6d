"""Pod topology spread (kai.plugins.topologyspread) through ``kai simulate``'s path: scenario
tables for DoNotSchedule (skew, minDomains, inclusion policies, matchLabelKeys, the node's
missing key) and ScheduleAnyway (a preference, never a filter)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import bindings, job, node, queue, simulate_docs, unschedulable  # noqa: E402

ZONE = "topology.kubernetes.io/zone"


def spread(max_skew=1, key=ZONE, when="DoNotSchedule", app="web", **extra):
    return {"topologySpreadConstraints": [{"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
                                           "labelSelector": {"matchLabels": {"app": app}}, **extra}]}


def zones(*zs, taints=None):
    return [node(f"n{i}", gpu=0, labels={ZONE: z} if z else {}, taints=taints if i == 0 else None)
            for i, z in enumerate(zs)]


def web(name, pods=1, running_on=(), **kw):
    """app=web pods; running ones are non-preemptible (``build``) so that consolidation does not
    move them out of the way and the tables test the filter alone."""
    if running_on:
        kw.setdefault("priority_class", "build")
    return job(name, pods=pods, labels={"app": "web", **kw.pop("labels", {})}, running_on=running_on, **kw)


SCENARIOS = [
    dict(id="skew-one-fills-the-empty-zone-first",
         docs=[zones("a", "b"), queue("q"), web("old", running_on=["n0"]), web("new", extra_spec=spread())],
         bound={"default/new-0": "n1"}),
    dict(id="a-gang-spreads-across-zones",
         docs=[zones("a", "b", "a", "b"), queue("q"), web("g", pods=4, extra_spec=spread())],
         zone_counts={"a": 2, "b": 2}),
    dict(id="node-without-the-key-is-not-used",
         docs=[zones("", "a"), queue("q"), web("old", running_on=["n1"]), web("new", extra_spec=spread(max_skew=5))],
         bound={"default/new-0": "n1"}),
    dict(id="min-domains-above-the-zones-counts-the-minimum-as-zero",
         docs=[zones("a", "b"), queue("q"), web("old", running_on=["n0"]), web("o2", running_on=["n1"]),
               web("new", extra_spec=spread(minDomains=3))],
         bound={}, reasons={"default/new": ["topology spread"]}),
    dict(id="node-affinity-policy-honor-ignores-zones-the-pod-cannot-use",
         docs=[zones("a", "b"), queue("q"), web("old", pods=3, running_on=["n0", "n0", "n0"]),
               web("new", node_selector={ZONE: "a"}, extra_spec=spread())],
         bound={"default/new-0": "n0"}),
    dict(id="node-affinity-policy-ignore-counts-every-zone",
         docs=[zones("a", "b"), queue("q"), web("old", pods=3, running_on=["n0", "n0", "n0"]),
               web("new", node_selector={ZONE: "a"}, extra_spec=spread(nodeAffinityPolicy="Ignore"))],
         bound={}),
    dict(id="match-label-keys-count-only-the-same-revision",
         docs=[zones("a", "b"), queue("q"),
               web("old", pods=2, running_on=["n1", "n1"], labels={"rev": "1"}),
               web("new", labels={"rev": "2"}, extra_spec=spread(matchLabelKeys=["rev"]))],
         bound={"default/new-0": "n1"}),            # no rev=2 pod anywhere: binpack's fuller node
    dict(id="without-match-label-keys-every-revision-counts",
         docs=[zones("a", "b"), queue("q"),
               web("old", pods=2, running_on=["n1", "n1"], labels={"rev": "1"}),
               web("new", labels={"rev": "2"}, extra_spec=spread())],
         bound={"default/new-0": "n0"}),
    dict(id="pods-of-other-namespaces-do-not-count",
         docs=[zones("a", "b"), queue("q"), web("old", ns="other", pods=2, running_on=["n0", "n0"]),
               web("fill", running_on=["n1"]),
               web("new", extra_spec=spread())],
         bound={"default/new-0": "n0"}),
    dict(id="schedule-anyway-prefers-but-never-blocks",
         docs=[zones("a", "b"), queue("q"), web("old", pods=3, running_on=["n0", "n0", "n0"]),
               web("new", extra_spec=spread(when="ScheduleAnyway"))],
         bound={"default/new-0": "n1"}),
    dict(id="schedule-anyway-places-where-do-not-schedule-would-not",
         docs=[zones("a"), queue("q"), web("old", pods=3, running_on=["n0", "n0", "n0"]),
               web("new", extra_spec=spread(when="ScheduleAnyway"))],
         bound={"default/new-0": "n0"}),
    dict(id="invalid-when-unsatisfiable-is-refused-with-its-name",
         docs=[zones("a"), queue("q"), web("new", extra_spec=spread(when="Sometimes"))],
         bound={}, reasons={"default/new": ["whenUnsatisfiable 'Sometimes'"]}),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[c["id"] for c in SCENARIOS])
def test_scenario(case):
    rep = simulate_docs(case["docs"])
    got = bindings(rep)
    if "bound" in case:
        assert got == case["bound"]
    if "zone_counts" in case:
        counts: dict[str, int] = {}
        for n in got.values():
            z = "a" if n in ("n0", "n2") else "b"
            counts[z] = counts.get(z, 0) + 1
        assert counts == case["zone_counts"]
    reasons = unschedulable(rep)
    for group, needles in case.get("reasons", {}).items():
        for needle in needles:
            assert needle in reasons[group], reasons
