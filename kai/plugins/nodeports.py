"""NodePorts (kube-scheduler's filter, run by KAI as a predicate; registered by ``predicates``).

A pod's host ports (kai.api.affinity.host_ports: containers and restartable init containers,
hostIP "" = 0.0.0.0, protocol "" = TCP) conflict on a node with a pod there that uses the same
protocol and port on the same hostIP, or on 0.0.0.0 on either side. Each wanted port is an
anti-constraint whose domain is the node itself (kai._fast.domains), over the ports index of
the PodTable plus this session's placements, so two pods of one run never share a port.
"""
from __future__ import annotations

from collections import Counter

from kai._fast.domains import KIND_ANTI
from kai.api.affinity import WILDCARD_IP
from kai.framework.pod_counts import PodCounts
from kai.framework.predicate import NodePredicate

PORTS_REASON = "node(s) didn't have free ports for the requested pod ports"


def _conflicts(a_ip: str, b_ip: str) -> bool:
    return a_ip == b_ip or a_ip == WILDCARD_IP or b_ip == WILDCARD_IP


class NodePorts(NodePredicate):
    name = "NodePorts"
    alike_stable = True         # applies: the pod's host ports
    label_blind = True

    def __init__(self, ssn) -> None:
        self.ssn = ssn

    def applies(self, task) -> bool:
        c = task.constraints
        return c is not None and bool(c.ports)

    def run_key(self, task):
        return task.constraints.ports

    def domain_constraints(self, task, job):
        pc = PodCounts.of(self.ssn)
        ports_in_use = pc.table.ports
        specs = []
        for ip, proto, port in task.constraints.ports:
            users = Counter()
            for other_ip, nodes in ports_in_use.get((proto, port), {}).items():
                if _conflicts(ip, other_ip):
                    users.update(nodes)

            def uses(x, ip=ip, proto=proto, port=port) -> bool:
                c = x.constraints
                return c is not None and any(p == port and pr == proto and _conflicts(ip, i) for i, pr, p in c.ports)

            e = pc.entry(("port", ip, proto, port), None, uses, per_node=dict(users), hint=("port", proto, port))
            specs.append(dict(dom=e.dom, counts=e.counts, kind=KIND_ANTI, releasing=e.releasing, self_inc=True, reason=PORTS_REASON))
        return specs, False
