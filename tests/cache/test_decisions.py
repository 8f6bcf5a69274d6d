"""kai.cache.decisions: what a cycle records, and what it leaves to the garbage collector."""
from __future__ import annotations

import gc

from kai.cache.cluster_state import ClusterState
from kai.cache.decisions import Decision, RecordingCache
from kai.sim.synthetic import make_pod, synthetic_nodes


def test_a_decision_is_not_tracked_by_the_cyclic_collector():
    d = Decision("ns/p", "n1")
    assert not gc.is_tracked(d) and d.gpu_groups == () and (d.action, d.preemptor) == ("", "")
    d.action = "allocate"                  # the scheduler names the action after it ran
    assert d == Decision("ns/p", "n1", action="allocate")


def test_bind_records_the_pod_and_shares_the_empty_groups():
    state = ClusterState()
    state.load(synthetic_nodes(2, seed=1), [], [])
    cache = RecordingCache(state)
    pod = make_pod("p", "ns", "g", gpus=1)
    state.upsert_pod(pod)
    task = state.pods[pod.metadata.uid]
    node = next(iter(state.nodes.by_name))
    cache.bind(task, node)
    (d,) = cache.result.bindings
    assert (d.pod, d.node, d.gpu_groups) == ("ns/p", node, ())
    assert task.node_name == node and state.pod_table.node_of(task.uid) is not None
    task.gpu_groups = ["g1"]
    cache.bind(task, node)
    assert cache.result.bindings[-1].gpu_groups == ["g1"]
    assert cache.result.bindings[-1].gpu_groups is not task.gpu_groups    # a copy, not the pod's list
