"""kai.testing.kube_filters, the independent checker: each kube-scheduler rule on a worked case."""
import msgspec

from kai.api.k8s import Node, Pod
from kai.testing.kube_filters import check, violations

HOST, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"


def node(name, zone):
    return msgspec.convert({"metadata": {"name": name, "labels": {ZONE: zone}}}, Node)


def pod(name, labels=None, **spec):
    return msgspec.convert({"metadata": {"name": name, "namespace": "d", "labels": labels or {}},
                            "spec": {"containers": [{"name": "c"}], **spec}}, Pod)


def term(app, key):
    return [{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]


NODES = [node("n0", "a"), node("n1", "a"), node("n2", "b")]


def test_anti_affinity_own_and_existing():
    web = pod("w", {"app": "web"})
    db = pod("db", {"app": "db"}, affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                                               term("web", ZONE)}})
    assert check(web, NODES[1], [(db, NODES[0])], NODES)           # existing anti on zone a
    assert not check(web, NODES[2], [(db, NODES[0])], NODES)
    own = pod("o", {"app": "db"}, affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                                               term("web", HOST)}})
    assert check(own, NODES[0], [(web, NODES[0])], NODES) and not check(own, NODES[1], [(web, NODES[0])], NODES)


def test_affinity_and_its_bootstrap():
    a = pod("a", {"app": "r"}, affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                                         term("r", ZONE)}})
    assert not check(a, NODES[0], [], NODES)                          # first of its kind: anywhere
    assert check(a, NODES[2], [(pod("x", {"app": "r"}), NODES[0])], NODES)


def test_spread_and_ports_in_order():
    sp = {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                                         "labelSelector": {"matchLabels": {"app": "s"}}}]}
    p1, p2, p3 = (pod(f"s{i}", {"app": "s"}, **sp) for i in range(3))
    assert violations([(p1, "n0"), (p2, "n2"), (p3, "n1")], NODES) == []
    assert violations([(p1, "n0"), (p2, "n1")], NODES) == ["d/s1 on n1: spread on topology.kubernetes.io/zone: "
                                                          "skew above 1"]
    ports = {"containers": [{"name": "c", "ports": [{"containerPort": 1, "hostPort": 80}]}]}
    assert violations([(pod("a", **ports), "n0"), (pod("b", **ports), "n0")], NODES) == \
        ["d/b on n0: host port TCP/80"]
