"""GPU occupancy per node and pool: whole + fractional + fragmented + free = the node's GPUs."""
from __future__ import annotations

import msgspec
import pytest

from kai.api.k8s import Node, Pod
from kai.cache.cluster_state import ClusterState
from kai.cache.occupancy import node_occupancy, pool_occupancy, total_occupancy


def node(name, gpus, pool=""):
    labels = {"kai.scheduler/node-pool": pool} if pool else {}
    return msgspec.convert({"metadata": {"name": name, "labels": labels},
                            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110",
                                                       "nvidia.com/gpu": str(gpus)}}}, Node)


def pod(name, node_name, gpus=0, fraction=None, scheduler="kai-scheduler"):
    req = {"cpu": "1", "memory": "1Gi"}
    ann = {}
    if gpus:
        req["nvidia.com/gpu"] = str(gpus)
    if fraction is not None:
        ann["gpu-fraction"] = str(fraction)
    return msgspec.convert({"metadata": {"name": name, "namespace": "t", "uid": name, "annotations": ann},
                            "spec": {"schedulerName": scheduler, "nodeName": node_name,
                                     "containers": [{"name": "c", "resources": {"requests": req}}]},
                            "status": {"phase": "Running"}}, Pod)


@pytest.fixture
def state():
    st = ClusterState()
    st.upsert_node(node("a-0", 8, "a"))
    st.upsert_node(node("a-1", 8, "a"))
    st.upsert_node(node("b-0", 4))
    st.upsert_node(node("cpu-0", 0))
    st.upsert_pod(pod("w0", "a-0", gpus=4))
    st.upsert_pod(pod("w1", "a-0", gpus=2, scheduler="default-scheduler"))   # other schedulers count too
    st.upsert_pod(pod("f0", "a-1", fraction=0.5))
    st.upsert_pod(pod("f1", "a-1", fraction=0.25))      # packed onto f0's device
    st.upsert_pod(pod("f2", "b-0", fraction=0.5))
    st.upsert_pod(pod("c0", "cpu-0"))
    return st


def test_node_rows_partition_the_gpus(state):
    rows = {n["name"]: n for n in node_occupancy(state.nodes)}
    assert set(rows) == {"a-0", "a-1", "b-0"}           # the CPU node has no GPUs to show
    assert rows["a-0"] == {"name": "a-0", "pool": "a", "gpus": 8, "whole": 6, "fractional": 0,
                           "fragmented": 0, "free": 2, "shared": []}
    assert rows["a-1"]["whole"] == 0 and rows["a-1"]["shared"] == [0.75]
    assert rows["a-1"]["fractional"] == 0.75 and rows["a-1"]["fragmented"] == 0.25 and rows["a-1"]["free"] == 7
    assert rows["b-0"]["pool"] == "default"
    for r in rows.values():
        assert r["whole"] + r["fractional"] + r["fragmented"] + r["free"] == pytest.approx(r["gpus"])


def test_pools_and_total(state):
    pools = pool_occupancy(state.nodes)
    assert [p["name"] for p in pools] == ["a", "default"]
    a = pools[0]
    assert a == {"name": "a", "nodes": 2, "gpus": 16, "whole": 6, "fractional": 0.75, "fragmented": 0.25,
                 "free": 9, "largestFree": 7}
    tot = total_occupancy(pools)
    assert tot["nodes"] == 3 and tot["gpus"] == 20 and tot["free"] == 12 and tot["largestFree"] == 7
    assert tot["fragmented"] == 0.75


def test_empty_table():
    st = ClusterState()
    assert node_occupancy(st.nodes) == [] and pool_occupancy(st.nodes) == []
    assert total_occupancy([])["gpus"] == 0
