"""The controller's single-writer loop against a real kube-apiserver, with events fed by hand.

Informers are not started: the test decides what the watch "delivers" and when, to show that
decisions stay applied (assumed) until the watch confirms them, that a stale update does not
undo them, and that no pod is bound twice.
"""
from __future__ import annotations

import time

import msgspec
import pytest

from kai.api.k8s import Node, Pod, PodGroup, Queue
from kai.api.storage import ConfigMap, ConfigMapMeta
from kai.cache.kubeclient import KubeClient, load_kubeconfig
from kai.config import default_config
from kai.controller.main import Controller
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

SCHED = "kai-ctl-test"


def _queue(name, parent=""):
    r = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    spec = {"resources": {"gpu": r, "cpu": r, "memory": r}}
    if parent:
        spec["parentQueue"] = parent
    return msgspec.convert({"metadata": {"name": name}, "spec": spec}, Queue)


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    return KubeClient(load_kubeconfig(control_plane.kubeconfig))


def _wait_binder(ctl: Controller, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ctl.events.empty():
            return
        time.sleep(0.05)
    raise AssertionError("no binder result")


def test_assumed_binding_survives_stale_updates_and_is_not_repeated(client, control_plane, kube_namespace):
    ns = kube_namespace
    node = msgspec.convert(control_plane.create_node(fake_node_manifest("ctl-node-0", gpus=4)), Node)
    pg = {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": "one", "namespace": ns},
          "spec": {"minMember": 1, "queue": "q"}}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "annotations": {"pod-group-name": "one"}},
           "spec": {"schedulerName": SCHED, "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "c", "image": "busybox",
                                    "resources": {"requests": {"nvidia.com/gpu": "1"},
                                                  "limits": {"nvidia.com/gpu": "1"}}}]}}
    created = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", pod), Pod)
    ctl = Controller(client, default_config(), scheduler_name=SCHED, group_pods=False)
    try:
        ctl.apply("Queue", "ADDED", _queue("root"))
        ctl.apply("Queue", "ADDED", _queue("q", "root"))
        ctl.apply("Node", "ADDED", node)
        # the service-account admission mounts kube-root-ca.crt (a projected configMap) into every
        # pod; without informers here, tell the ConfigMap predicate that it exists
        ctl.apply("ConfigMap", "ADDED", ConfigMap(metadata=ConfigMapMeta(name="kube-root-ca.crt", namespace=ns)))
        ctl.apply("PodGroup", "ADDED", msgspec.convert(pg, PodGroup))
        ctl.apply("Pod", "ADDED", created)
        ctl.cycle(leader=True)
        assert [d.pod for d in ctl.last_result.bindings] == [f"{ns}/p"]
        _wait_binder(ctl)
        ctl.cycle(leader=True)                               # BIND_OK applied, watch silent so far
        assert not ctl.last_result.bindings
        ctl.apply("Pod", "MODIFIED", created)                # a stale update: still no nodeName
        ctl.cycle(leader=True)
        assert not ctl.last_result.bindings
        assert ctl.binder.bind_count == 1
        bound = client.get(f"/api/v1/namespaces/{ns}/pods/p", Pod)
        assert bound.spec.node_name == "ctl-node-0"
        ctl.apply("Pod", "MODIFIED", bound)                  # the watch confirms: assumption dropped
        assert created.metadata.uid not in ctl.binder.assumed_bind
        ctl.cycle(leader=True)
        assert not ctl.last_result.bindings
        # a follower schedules nothing
        ctl.cycle(leader=False)
        assert ctl.cycles == 4
    finally:
        ctl.stop()
        client.delete("/api/v1/nodes/ctl-node-0")


def test_failed_binding_returns_the_pod_to_pending(client, kube_namespace):
    ns = kube_namespace
    node = msgspec.convert(fake_node_manifest("ctl-ghost-node", gpus=4), Node)   # only in our cache
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "g", "annotations": {"pod-group-name": "one"}},
           "spec": {"schedulerName": SCHED, "containers": [{"name": "c", "image": "busybox"}]}}
    created = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", pod), Pod)
    # someone else binds it first; our cache has not seen that yet, so our binding gets a 409
    client.request("POST", f"/api/v1/namespaces/{ns}/pods/g/binding",
                   {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "g"},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "elsewhere"}})
    ctl = Controller(client, default_config(), scheduler_name=SCHED, group_pods=False)
    ctl.informers = {}
    ctl._latest_pod = lambda key: created if key == f"{ns}/g" else None
    ctl.binder.latest_pod = ctl._latest_pod
    try:
        ctl.apply("Queue", "ADDED", _queue("root"))
        ctl.apply("Queue", "ADDED", _queue("q", "root"))
        ctl.apply("Node", "ADDED", node)
        # the service-account admission mounts kube-root-ca.crt (a projected configMap) into every
        # pod; without informers here, tell the ConfigMap predicate that it exists
        ctl.apply("ConfigMap", "ADDED", ConfigMap(metadata=ConfigMapMeta(name="kube-root-ca.crt", namespace=ns)))
        ctl.apply("PodGroup", "ADDED", msgspec.convert(
            {"metadata": {"name": "one", "namespace": ns}, "spec": {"minMember": 1, "queue": "q"}}, PodGroup))
        ctl.apply("Pod", "ADDED", created)
        ctl.cycle(leader=True)
        assert len(ctl.last_result.bindings) == 1
        _wait_binder(ctl)
        ctl.drain()
        assert "already assigned" in ctl.binder.failed_binds[f"{ns}/g"]
        assert ctl.binder.bind_count == 1
        assert ctl.state.pods[created.metadata.uid].node_name == ""     # pending again in the cache
    finally:
        ctl.stop()
