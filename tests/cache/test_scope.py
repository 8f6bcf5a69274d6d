"""kai.cache.scope: KAI's partition rules (key=value, the default shard's "no such label",
no key: everything), the server-side parameters, Lease names and flag errors."""
from __future__ import annotations

import argparse

import pytest

from kai.cache.scope import Scope, ScopeError

KEY = "kai.scheduler/node-pool"


@pytest.mark.parametrize("value, labels, inside", [
    ("a", {KEY: "a"}, True),
    ("a", {KEY: "b"}, False),
    ("a", {}, False),
    ("", {}, True),                 # the default shard: objects without the label
    ("", {KEY: "a"}, False),
    ("", {"other": "x"}, True),
])
def test_partition_membership(value, labels, inside):
    assert Scope(partition_label_value=value).in_partition(labels) is inside


def test_no_key_sees_everything():
    s = Scope(node_pool_label_key="")
    assert s.in_partition({KEY: "a"}) and s.in_partition({})
    assert s.informer_params() == {}


def test_server_side_selectors_and_names():
    s = Scope(partition_label_value="gpu-nodes")
    assert s.informer_params() == {k: {"labelSelector": f"{KEY}=gpu-nodes"} for k in ("Node", "Queue", "PodGroup")}
    assert (s.node_pool, s.lease_name("kai-scheduler")) == ("gpu-nodes", "kai-scheduler-gpu-nodes")
    d = Scope()
    assert d.informer_params()["Node"] == {"labelSelector": f"!{KEY}"}
    assert (d.node_pool, d.lease_name("kai-scheduler")) == ("default", "kai-scheduler")
    c = Scope(node_pool_label_key="example.com/pool", partition_label_value="x")
    assert c.informer_params()["Queue"] == {"labelSelector": "example.com/pool=x"}


@pytest.mark.parametrize("kw, flag", [
    ({"partition_label_value": "bad value"}, "--nodepool-label-key / --partition-label-value"),
    ({"node_pool_label_key": "", "partition_label_value": "a"}, "--partition-label-value"),
    ({"node_pool_label_key": "-bad"}, "--nodepool-label-key"),
    ({"pod_label_selector": "a in (b"}, "--pod-label-selector"),
    ({"namespace_label_selector": "=x"}, "--namespace-label-selector"),
])
def test_bad_flags_name_the_flag(kw, flag):
    with pytest.raises(ScopeError, match=flag.split(" ")[0]):
        Scope(**kw)


def test_from_args_defaults():
    s = Scope.from_args(argparse.Namespace())
    assert (s.node_pool_label_key, s.partition_label_value) == (KEY, "")
    s = Scope.from_args(argparse.Namespace(nodepool_label_key="", partition_label_value=None))
    assert s.partition.everything


def test_selective_monitoring_params():
    s = Scope(node_pool_label_key="", pod_label_selector="app=batch, tier in (a,b)",
              namespace_label_selector="team=ml")
    p = s.informer_params("kai-scheduler")
    assert p["Pod"] == {"labelSelector": "app=batch,tier in (a,b)",
                        "fieldSelector": "spec.schedulerName=kai-scheduler,spec.nodeName="}
    assert p["NodePod"] == {"fieldSelector": "spec.nodeName!="}
    assert "Namespace" not in p             # all namespaces' labels are still needed (affinity terms)
    assert s.selective and s.in_scope({"app": "batch", "tier": "a"}, {"team": "ml"})
    assert not s.in_scope({"app": "batch"}, {"team": "ml"}) and not s.in_scope({"app": "batch", "tier": "b"}, {})
    assert not Scope().selective and "Pod" not in Scope().informer_params()
