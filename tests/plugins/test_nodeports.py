"""NodePorts (kai.plugins.nodeports): host port conflicts by protocol, port and host IP,
including the pods of one run and sidecar init containers."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import bindings, job, node, queue, simulate_docs, unschedulable  # noqa: E402


def port(p, proto="TCP", ip=""):
    d = {"containerPort": p, "hostPort": p, "protocol": proto}
    if ip:
        d["hostIP"] = ip
    return [d]


def nodes(n):
    return [node(f"n{i}", gpu=0) for i in range(n)]


SCENARIOS = [
    dict(id="same-port-goes-elsewhere", docs=[nodes(2), queue("q"), job("a", ports=port(80), running_on=["n0"]),
                                               job("b", ports=port(80))], bound={"default/b-0": "n1"}),
    dict(id="no-node-free-waits-with-the-reason",
         docs=[nodes(1), queue("q"), job("a", ports=port(80), running_on=["n0"], priority_class="build"),
               job("b", ports=port(80))],
         bound={}, reasons={"default/b": ["1 node(s) didn't have free ports for the requested pod ports"]}),
    dict(id="other-protocol-does-not-conflict",
         docs=[nodes(1), queue("q"), job("a", ports=port(53, "UDP"), running_on=["n0"]),
               job("b", ports=port(53, "TCP"))], bound={"default/b-0": "n0"}),
    dict(id="distinct-host-ips-share-a-port",
         docs=[nodes(1), queue("q"), job("a", ports=port(80, ip="10.0.0.1"), running_on=["n0"]),
               job("b", ports=port(80, ip="10.0.0.2"))], bound={"default/b-0": "n0"}),
    dict(id="wildcard-ip-conflicts-with-any-ip",
         docs=[nodes(2), queue("q"), job("a", ports=port(80, ip="10.0.0.1"), running_on=["n0"]),
               job("b", ports=port(80))], bound={"default/b-0": "n1"}),
    dict(id="a-run-of-identical-pods-takes-one-node-each",
         docs=[nodes(3), queue("q"), job("g", pods=3, ports=port(9000))],
         nodes_used=3),
    dict(id="a-gang-larger-than-the-nodes-waits-whole",
         docs=[nodes(2), queue("q"), job("g", pods=3, ports=port(9000))], bound={},
         reasons={"default/g": ["free ports"]}),
    dict(id="sidecar-init-container-ports-count",
         docs=[nodes(2), queue("q"),
               job("a", running_on=["n0"], extra_spec={"initContainers": [
                   {"name": "side", "restartPolicy": "Always", "ports": port(7000)}]}),
               job("b", ports=port(7000))], bound={"default/b-0": "n1"}),
    dict(id="plain-init-container-ports-do-not-count",
         docs=[nodes(1), queue("q"),
               job("a", running_on=["n0"], extra_spec={"initContainers": [{"name": "init", "ports": port(7000)}]}),
               job("b", ports=port(7000))], bound={"default/b-0": "n0"}),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[c["id"] for c in SCENARIOS])
def test_scenario(case):
    rep = simulate_docs(case["docs"])
    got = bindings(rep)
    if "bound" in case:
        assert got == case["bound"]
    if "nodes_used" in case:
        assert len(set(got.values())) == len(got) == case["nodes_used"]
    reasons = unschedulable(rep)
    for group, needles in case.get("reasons", {}).items():
        for needle in needles:
            assert needle in reasons[group], reasons
