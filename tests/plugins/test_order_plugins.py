"""kai.plugins: priority, elastic, nodeplacement and predicates register the right callbacks."""
from types import SimpleNamespace

import msgspec

from kai.cache.cluster_state import ClusterState
import numpy as np
import pytest

from kai._fast.placement import STRATEGY_BINPACK, STRATEGY_SPREAD
from kai.api.k8s import Pod, PodGroup
from kai.api.pod_info import PodInfo
from kai.api.podgroup_info import PodGroupInfo
from kai.api.resources import ResourceRegistry
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.plugins import build_plugins
from kai.plugins.elastic import Elastic
from kai.plugins.nodeplacement import NodePlacement
from kai.plugins.predicates import Predicates
from kai.plugins.priority import Priority


def fake_ssn(**kw):
    return SimpleNamespace(job_order_keys=[], pre_predicate_fns=[], config=None,
                           placement={"gpu": STRATEGY_BINPACK, "cpu": STRATEGY_BINPACK}, **kw)


def make_job(name, priority=50, min_member=1, running=0, pending=1, created="2024-01-01T00:00:00Z"):
    pg = msgspec.convert({"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
                          "spec": {"minMember": min_member, "queue": "q"}}, PodGroup)
    job = PodGroupInfo(pg, priority, True)
    reg = ResourceRegistry()
    for i in range(running + pending):
        spec = {"containers": [{"name": "c"}]}
        if i < running:
            spec["nodeName"] = "n"
        pod = msgspec.convert({"metadata": {"name": f"{name}-{i}", "namespace": "ns"}, "spec": spec,
                               "status": {"phase": "Running" if i < running else "Pending"}}, Pod)
        job.add_task(PodInfo(pod, reg))
    return job


def test_priority_orders_higher_first():
    ssn = fake_ssn()
    Priority().on_session_open(ssn)
    jobs = [make_job("low", 50), make_job("high", 125), make_job("mid", 100)]
    (key,) = ssn.job_order_keys
    assert [j.name for j in sorted(jobs, key=key)] == ["high", "mid", "low"]


def test_elastic_orders_below_min_then_at_min_then_above():
    ssn = fake_ssn()
    Elastic().on_session_open(ssn)
    (key,) = ssn.job_order_keys
    above = make_job("above", min_member=1, running=2)
    at = make_job("at", min_member=2, running=2)
    below = make_job("below", min_member=3, running=1)
    assert (key(below), key(at), key(above)) == (0, 1, 2)
    assert [j.name for j in sorted([above, at, below], key=key)] == ["below", "at", "above"]


@pytest.mark.parametrize("args, expected", [
    ({}, {"gpu": STRATEGY_BINPACK, "cpu": STRATEGY_BINPACK}),
    ({"gpu": "spread"}, {"gpu": STRATEGY_SPREAD, "cpu": STRATEGY_BINPACK}),
    ({"gpu": "binpack", "cpu": "spread"}, {"gpu": STRATEGY_BINPACK, "cpu": STRATEGY_SPREAD}),
])
def test_nodeplacement_arguments(args, expected):
    ssn = fake_ssn()
    NodePlacement(args).on_session_open(ssn)
    assert ssn.placement == expected


def _task(annotations=None, gpu=0, cpu="1"):
    req = {"cpu": cpu}
    if gpu:
        req["nvidia.com/gpu"] = gpu
    pod = msgspec.convert({"metadata": {"name": "t", "namespace": "ns", "annotations": annotations or {}},
                           "spec": {"containers": [{"name": "c", "resources": {"requests": req}}]}}, Pod)
    return PodInfo(pod, ResourceRegistry())


def test_predicates_prepredicate():
    reg = ResourceRegistry()
    alloc = np.zeros((len(reg), 2))
    alloc[0] = [4000, 8000]          # cpu millicores
    alloc[2] = [2, 4]                # gpus
    alloc[3] = [10, 10]
    ssn = fake_ssn(allocatable=alloc, registry=reg, state=ClusterState(), node_predicates=[],
                   node_order_fns=[], allocate_handlers=[], deallocate_handlers=[])
    Predicates().on_session_open(ssn)
    pre, configmaps = ssn.pre_predicate_fns      # resource fit; KAI's ConfigMap predicate
    assert [p.name for p in ssn.node_predicates] == ["InterPodAffinity", "PodTopologySpread", "NodePorts",
                                                     "VolumeBinding", "VolumeRestrictions", "VolumeZone",
                                                     "NodeVolumeLimits"]
    assert pre(_task(gpu=4, cpu="8"), None) is None
    msg = pre(_task(gpu=5), None)
    assert "requests 5 nvidia.com/gpu" in msg and "more than any node has (4)" in msg
    assert "requests 9 cpu" in pre(_task(cpu="9"), None)
    assert "gpu-fraction" in pre(_task({"gpu-fraction": "7"}), None)


def test_build_plugins_skips_unimplemented_and_keeps_order():
    names = [p.name for p in build_plugins(default_config())]
    assert names.index("predicates") < names.index("priority") < names.index("elastic") < names.index("nodeplacement")
    from kai.framework.plugin import PLUGINS
    assert set(names) <= set(PLUGINS) and len(names) == len(set(names))


def test_unimplemented_plugins_are_reported_not_dropped():
    from kai.config import parse_config
    from kai.plugins import BUILT_IN, unimplemented
    cfg = parse_config({"tiers": [{"plugins": [{"name": "predicates"}, {"name": "nodeavailability"},
                                               {"name": "dynamicresources"}, {"name": "snapshot"}]}]})
    got = unimplemented(cfg)
    assert len(got) == 1 and "'snapshot'" in got[0]
    assert "nodeavailability" in BUILT_IN and not any("nodeavailability" in w for w in got)
    assert [p.name for p in build_plugins(cfg)] == ["predicates", "dynamicresources"]


def test_scheduler_start_reports_them_as_a_warning_event(monkeypatch):
    from kai.config import parse_config
    from kai.controller.main import report_unimplemented_plugins

    class Events:
        def __init__(self):
            self.got = []

        def event(self, obj, reason, message, etype="Normal"):
            self.got.append((obj["name"], reason, etype, message))

    monkeypatch.setenv("POD_NAME", "kai-scheduler-0")
    monkeypatch.setenv("POD_NAMESPACE", "kai-scheduler")
    ev = Events()
    warnings = report_unimplemented_plugins(ev, parse_config({"tiers": [{"plugins": [{"name": "snapshot"}]}]}))
    assert len(warnings) == 1
    assert ev.got == [("kai-scheduler-0", "PluginNotImplemented", "Warning", warnings[0])]
