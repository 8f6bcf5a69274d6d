"""Metrics.observe_cycle: every per-cycle KAI metric moves as a CycleResult says."""
from __future__ import annotations

import msgspec
from prometheus_client import generate_latest

from kai.api.k8s import Pod, PodGroup
from kai.cache.cluster_state import ClusterState
from kai.controller.metrics import Metrics
from kai.cache.decisions import CycleResult, Decision


def val(m: Metrics, name: str, **labels) -> float:
    v = m.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


def _state() -> ClusterState:
    st = ClusterState()
    for name, pool in (("pg-a", ""), ("pg-b", "pool-x"), ("pg-c", "")):
        labels = {"kai.scheduler/node-pool": pool} if pool else {}
        st.upsert_podgroup(msgspec.convert({"metadata": {"name": name, "namespace": "ns", "uid": f"{name}-uid",
                                                         "labels": labels},
                                            "spec": {"minMember": 1, "queue": "q"}}, PodGroup))
    for pg, pods in (("pg-a", ["a-0", "a-1"]), ("pg-b", ["b-0", "b-1"]), ("pg-c", ["c-0"])):
        for p in pods:
            st.upsert_pod(msgspec.convert({"metadata": {"name": p, "namespace": "ns", "uid": f"{p}-uid",
                                                        "annotations": {"pod-group-name": pg}},
                                           "spec": {"schedulerName": "kai-scheduler"}}, Pod))
    return st


def _result() -> CycleResult:
    r = CycleResult(duration=0.125, open_seconds=0.002, close_seconds=0.001,
                    action_seconds={"allocate": 0.0035, "preempt": 0.00125})
    r.bindings = [Decision("ns/a-0", "n0", action="allocate"), Decision("ns/a-1", "n0", action="allocate"),
                  Decision("ns/c-0", "n1")]                      # no action: counted as allocate
    r.pipelined = [Decision("ns/x-0", "n1", action="preempt")]   # pod unknown to the state: its own group
    r.evictions = [Decision("ns/b-0", "n2", action="preempt", preemptor="ns/pg-a"),
                   Decision("ns/b-1", "n2", action="preempt", preemptor="ns/pg-a"),
                   Decision("ns/c-0", "n1", action="reclaim", preemptor="ns/pg-z")]
    r.queues = [{"name": "q", "parent": None, "fairShare": {"gpu": 4, "cpu": 8000, "memory": 16_000_000_000},
                 "allocated": {"gpu": 2, "cpu": 3500, "memory": 2_000_000_000}},
                {"name": "gone", "parent": None, "fairShare": {"gpu": 1, "cpu": 0, "memory": 0},
                 "allocated": {"gpu": 0, "cpu": 0, "memory": 0}}]
    return r


def test_observe_cycle_updates_all_metrics():
    m = Metrics("kai")
    st = _state()
    m.observe_cycle(_result(), state=st)

    assert val(m, "kai_e2e_scheduling_latency_milliseconds") == 125.0
    assert val(m, "kai_open_session_latency_milliseconds") == 2.0
    assert val(m, "kai_close_session_latency_milliseconds") == 1.0
    assert val(m, "kai_action_scheduling_latency_milliseconds", action="allocate") == 3.5
    assert val(m, "kai_action_scheduling_latency_milliseconds", action="preempt") == 1.25
    # allocate bound pods of pg-a and pg-c; preempt pipelined x-0 and evicted for pg-a
    assert val(m, "kai_podgroups_scheduled_by_action_total", action="allocate") == 2
    assert val(m, "kai_podgroups_scheduled_by_action_total", action="preempt") == 2
    assert val(m, "kai_podgroups_scheduled_by_action_total", action="reclaim") == 1
    # acted on: also the victims (pg-b for preempt, pg-c for reclaim)
    assert val(m, "kai_podgroups_acted_on_by_action_total", action="preempt") == 3
    assert val(m, "kai_podgroups_acted_on_by_action_total", action="reclaim") == 2
    assert val(m, "kai_total_preemption_attempts_total") == 1
    assert val(m, "kai_pod_group_evicted_pods_total", podgroup="pg-b", uid="pg-b-uid", nodepool="pool-x",
               action="preempt") == 2
    assert val(m, "kai_pod_group_evicted_pods_total", podgroup="pg-c", uid="pg-c-uid", nodepool="default",
               action="reclaim") == 1
    assert val(m, "kai_queue_fair_share_gpu", queue_name="q") == 4
    assert val(m, "kai_queue_fair_share_cpu_cores", queue_name="q") == 8.0
    assert val(m, "kai_queue_fair_share_memory_gb", queue_name="q") == 16.0
    assert val(m, "kai_queue_gpu_usage", queue_name="q") == 2
    assert val(m, "kai_queue_cpu_usage", queue_name="q") == 3.5
    assert val(m, "kai_queue_memory_usage", queue_name="q") == 2.0

    # a second cycle: counters add up, gauges follow, a deleted queue disappears
    r2 = CycleResult(duration=0.01, action_seconds={"allocate": 0.002}, bindings=[Decision("ns/b-0", "n0", action="allocate")],
                     evictions=[Decision("ns/a-0", "n0", action="preempt", preemptor="ns/pg-c")])
    r2.queues = [{"name": "q", "parent": None, "fairShare": {"gpu": 3, "cpu": 1000, "memory": 0},
                  "allocated": {"gpu": 3, "cpu": 0, "memory": 0}}]
    m.observe_cycle(r2, state=st)
    assert val(m, "kai_e2e_scheduling_latency_milliseconds") == 10.0
    assert val(m, "kai_action_scheduling_latency_milliseconds", action="allocate") == 2.0
    assert val(m, "kai_podgroups_scheduled_by_action_total", action="allocate") == 3
    assert val(m, "kai_total_preemption_attempts_total") == 2
    assert val(m, "kai_pod_group_evicted_pods_total", podgroup="pg-a", uid="pg-a-uid", nodepool="default",
               action="preempt") == 1
    assert val(m, "kai_queue_fair_share_gpu", queue_name="q") == 3
    assert val(m, "kai_queue_gpu_usage", queue_name="q") == 3
    assert m.registry.get_sample_value("kai_queue_fair_share_gpu", {"queue_name": "gone"}) is None


def test_metrics_namespace_prefix_and_no_state():
    m = Metrics("custom")
    m.observe_cycle(_result())
    text = generate_latest(m.registry).decode()
    assert "custom_e2e_scheduling_latency_milliseconds 125.0" in text
    assert "kai_" not in text
    # without the state each pod is its own group and evictions have no podgroup
    assert val(m, "custom_podgroups_scheduled_by_action_total", action="allocate") == 3
    assert val(m, "custom_pod_group_evicted_pods_total", podgroup="", uid="", nodepool="default",
               action="preempt") == 2


def test_empty_cycle_changes_only_latency():
    m = Metrics()
    m.observe_cycle(CycleResult(duration=0.002))
    assert val(m, "kai_e2e_scheduling_latency_milliseconds") == 2.0
    assert val(m, "kai_total_preemption_attempts_total") == 0
    text = generate_latest(m.registry).decode()
    assert "kai_podgroups_scheduled_by_action_total{" not in text


def test_unschedulable_by_cause_and_gpu_devices_by_pool():
    from kai.api.k8s import Node
    m = Metrics("kai")
    st = ClusterState()
    st.upsert_node(msgspec.convert({"metadata": {"name": "n0", "labels": {"kai.scheduler/node-pool": "pool-x"}},
                                    "status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": "8"}}}, Node))
    for name, req, ann in (("w0", {"nvidia.com/gpu": "3"}, {}), ("f0", {}, {"gpu-fraction": "0.25"})):
        st.upsert_pod(msgspec.convert({"metadata": {"name": name, "namespace": "ns", "uid": name, "annotations": ann},
                                       "spec": {"schedulerName": "kai-scheduler", "nodeName": "n0",
                                                "containers": [{"name": "c", "resources": {"requests": req}}]},
                                       "status": {"phase": "Running"}}, Pod))
    r = CycleResult()
    r.unschedulable = {"ns/a": ["pod ns/a-0: 0/1 nodes fit: 1 insufficient nvidia.com/gpu"],
                       "ns/b": ["gang of 2 pods: only 0 could be placed; pod ns/b-0: 0/1 nodes fit: "
                                "1 insufficient nvidia.com/gpu"],
                       "ns/c": ["OverLimit: queue 'q' would use 9 gpu, above its limit 8"]}
    m.observe_cycle(r, state=st)
    assert val(m, "kai_unschedulable_podgroups", reason="insufficient nvidia.com/gpu") == 2
    assert val(m, "kai_unschedulable_podgroups", reason="OverLimit") == 1
    got = {s: val(m, "kai_gpu_devices", nodepool="pool-x", state=s)
           for s in ("whole", "fractional", "fragmented", "free")}
    assert got == {"whole": 3, "fractional": 0.25, "fragmented": 0.75, "free": 4}
    # a cause that went away is no longer exported
    r.unschedulable = {"ns/c": r.unschedulable["ns/c"]}
    m.observe_cycle(r, state=st)
    text = generate_latest(m.registry).decode()
    assert 'reason="insufficient nvidia.com/gpu"' not in text and 'reason="OverLimit"' in text
