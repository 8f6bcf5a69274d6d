"""Preferred node affinity in the score (kai.plugins.nodeaffinity): weights summed per node,
normalized as kube-scheduler does, strong enough to beat bin-packing, never a filter."""
from __future__ import annotations

import os
import sys

import msgspec
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import bindings, job, node, queue, simulate_docs  # noqa: E402

from kai.api.k8s import Node, Pod  # noqa: E402
from kai.api.resources import ResourceRegistry  # noqa: E402
from kai.cache.node_table import NodeTable  # noqa: E402


def prefer(*terms):
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "preference": {"matchExpressions": [{"key": k, "operator": "In", "values": [v]}]}}
        for w, k, v in terms]}}


def test_preference_beats_binpack_but_does_not_filter():
    docs = [node("full", gpu=0, labels={"disk": "hdd"}), node("empty", gpu=0, labels={"disk": "ssd"}), queue("q"),
            job("fill", running_on=["full"], cpu="30"),
            job("p", affinity=prefer((10, "disk", "ssd")))]
    assert bindings(simulate_docs(docs))["default/p-0"] == "empty"
    # no node has the preferred label: placed anyway (by binpack, on the fuller node)
    docs[-1] = job("p", affinity=prefer((10, "disk", "nvme")))
    assert bindings(simulate_docs(docs))["default/p-0"] == "full"


def test_heavier_preference_wins():
    docs = [node("a", gpu=0, labels={"zone": "x"}), node("b", gpu=0, labels={"rack": "r1"}), queue("q"),
            job("p", affinity=prefer((20, "zone", "x"), (80, "rack", "r1")))]
    assert bindings(simulate_docs(docs))["default/p-0"] == "b"


def test_weights_sum_and_skip_empty_or_zero_terms():
    reg = ResourceRegistry()
    t = NodeTable(reg)
    for name, labels in (("n0", {"a": "1", "b": "1"}), ("n1", {"a": "1"}), ("n2", {})):
        t.upsert(msgspec.convert({"metadata": {"name": name, "labels": labels},
                                  "status": {"allocatable": {"cpu": "1"}}}, Node))
    pod = msgspec.convert({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 3, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}},
        {"weight": 5, "preference": {"matchExpressions": [{"key": "b", "operator": "In", "values": ["1"]}]}},
        {"weight": 0, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}},
        {"weight": 7, "preference": {}}]}}}}, Pod)
    w = t.preferred_affinity_weights(pod)
    order = [t.by_name[n].idx for n in ("n0", "n1", "n2")]
    assert np.asarray(w)[order].tolist() == [8.0, 3.0, 0.0]
    assert t.preferred_affinity_weights(msgspec.convert({}, Pod)) is None
