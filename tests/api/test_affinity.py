"""kai.api.affinity: terms resolved against the stating pod (namespaces, matchLabelKeys merged as
the API server merges them), spread defaults, host port sanitizing, refusals."""
import msgspec
import pytest

from kai.api.affinity import PodConstraints, host_ports
from kai.api.k8s import Pod
from kai.api.selectors import SelectorError


def pod(spec, labels=None, ns="team"):
    return msgspec.convert({"metadata": {"name": "p", "namespace": ns, "labels": labels or {}}, "spec": spec}, Pod)


def anti(**term):
    return {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}, **term}]}}}


def test_plain_pods_have_no_constraints():
    assert PodConstraints.of(pod({"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]})) is None


def test_namespaces_default_to_the_pods_own_and_namespace_selector_replaces_them():
    (t,) = PodConstraints.of(pod(anti())).anti_affinity
    assert t.namespaces == frozenset({"team"}) and t.ns_selector.nothing
    assert t.matches("team", {"app": "x"}, None) and not t.matches("other", {"app": "x"}, None)
    (t,) = PodConstraints.of(pod(anti(namespaceSelector={}))).anti_affinity
    assert t.namespaces == frozenset() and t.matches("other", {"app": "x"}, None)
    (t,) = PodConstraints.of(pod(anti(namespaceSelector={"matchLabels": {"env": "prod"}}))).anti_affinity
    assert t.matches("other", {"app": "x"}, {"env": "prod"}) and not t.matches("other", {"app": "x"}, {})


def test_match_and_mismatch_label_keys_merge_like_the_api_server():
    (t,) = PodConstraints.of(pod(anti(matchLabelKeys=["rev", "absent"], mismatchLabelKeys=["team"]),
                                 labels={"rev": "7", "team": "a"})).anti_affinity
    assert t.matches("team", {"app": "x", "rev": "7", "team": "b"}, None)
    assert not t.matches("team", {"app": "x", "rev": "8", "team": "b"}, None)
    assert not t.matches("team", {"app": "x", "rev": "7", "team": "a"}, None)


def test_spread_defaults_and_refusals():
    c = {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "x"}}}
    (s,) = PodConstraints.of(pod({"topologySpreadConstraints": [c]})).spread
    assert (s.min_domains, s.honor_affinity, s.honor_taints, s.hard) == (1, True, False, True)
    for bad, msg in (({"maxSkew": 0}, "maxSkew"), ({"whenUnsatisfiable": "x"}, "whenUnsatisfiable"),
                     ({"nodeTaintsPolicy": "Maybe"}, "nodeTaintsPolicy"),
                     ({"minDomains": 2, "whenUnsatisfiable": "ScheduleAnyway"}, "minDomains")):
        with pytest.raises(SelectorError, match=msg):
            PodConstraints.of(pod({"topologySpreadConstraints": [{**c, **bad}]}))


def test_host_ports_sanitized_sorted_unique_with_sidecars_only():
    p = pod({"containers": [{"name": "a", "ports": [{"containerPort": 1, "hostPort": 80},
                                                    {"containerPort": 1, "hostPort": 80, "protocol": "TCP"},
                                                    {"containerPort": 2, "hostPort": 53, "protocol": "udp",
                                                     "hostIP": "10.0.0.1"}]}],
             "initContainers": [{"name": "i", "ports": [{"containerPort": 3, "hostPort": 90}]},
                                {"name": "s", "restartPolicy": "Always", "ports": [{"containerPort": 4, "hostPort": 91}]}]})
    assert host_ports(p) == (("0.0.0.0", "TCP", 80), ("0.0.0.0", "TCP", 91), ("10.0.0.1", "UDP", 53))


def test_weights_and_topology_key_are_checked():
    with pytest.raises(SelectorError, match="weight"):
        PodConstraints.of(pod({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "podAffinityTerm": {"topologyKey": "z", "labelSelector": {}}}]}}}))
    with pytest.raises(SelectorError, match="topologyKey"):
        PodConstraints.of(pod(anti(topologyKey="")))
