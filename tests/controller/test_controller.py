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
from kai.cache.status import COMPONENT
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
        # a follower schedules nothing; it warms the scheduler's kept indexes when the state
        # changed (here: the confirmed binding), so a cycle it leads later starts warm
        ctl._warmed = (ctl._warmed[0], float("-inf"))         # (as if the last warm were long ago)
        ctl.cycle(leader=False)
        assert ctl.cycles == 4 and ctl._warmed[0] == ctl.state.change_seq
        assert ctl.scheduler.memory.pending_index.seq == ctl.state.change_seq
        assert ctl.binder.bind_count == 1
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


def _metric(ctl: Controller, name: str, **labels) -> float:
    v = ctl.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_bad_nodes_do_not_stop_start_up_and_the_rest_is_scheduled(client, control_plane, kube_namespace):
    """Issue 14.8/16 live repro: the API server stores ``cpu: 1e400`` (as ``10e399``) and 100k GPUs;
    kai's start-up aborted on such a Node. Now each is reported (Event, log, metric) and left out."""
    import gc
    import threading
    import uuid

    ns = kube_namespace
    tag = uuid.uuid4().hex[:6]
    good, huge, many = f"ok-{tag}", f"bad-cpu-{tag}", f"bad-gpus-{tag}"
    control_plane.create_node(fake_node_manifest(good, gpus=4))
    control_plane.create_node(fake_node_manifest(huge, gpus=4, extra_resources={"cpu": "1e400"}))
    control_plane.create_node(fake_node_manifest(many, gpus=4, extra_resources={"nvidia.com/gpu": "100000"}))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"pod-group-name": "one"}},
           "spec": {"schedulerName": SCHED, "nodeSelector": {"kubernetes.io/hostname": good},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "c", "image": "busybox",
                                    "resources": {"requests": {"nvidia.com/gpu": "1"},
                                                  "limits": {"nvidia.com/gpu": "1"}}}]}}
    client.post(f"/api/v1/namespaces/{ns}/pods", pod)
    ctl = Controller(client, default_config(), scheduler_name=SCHED, group_pods=False)
    gc.unfreeze()
    try:
        ctl.start()
        assert ctl.initial_sync(threading.Event(), timeout=30)
        assert gc.get_freeze_count() > 0          # the first list is kept out of later collections
        assert ctl.scheduler.memory.pending_index is not None        # warmed after the first sync
        assert _metric(ctl, "kai_warm_latency_milliseconds") > 0
        assert good in ctl.state.nodes.by_name
        assert huge not in ctl.state.nodes.by_name and many not in ctl.state.nodes.by_name
        assert "status.allocatable.cpu: quantity '10e399' is too large" in ctl.invalid["Node"][huge]
        assert "'100k' GPUs is more than 1024 per node" in ctl.invalid["Node"][many]
        assert _metric(ctl, "kai_invalid_objects", kind="Node") >= 2
        assert _metric(ctl, "kai_invalid_object_reports_total", kind="Node") >= 2
        ctl.apply("Queue", "ADDED", _queue("root"))
        ctl.apply("Queue", "ADDED", _queue("q", "root"))
        ctl.apply("PodGroup", "ADDED", msgspec.convert(
            {"metadata": {"name": "one", "namespace": ns}, "spec": {"minMember": 1, "queue": "q"}}, PodGroup))
        ctl.cycle(leader=True)
        assert [(d.pod, d.node) for d in ctl.last_result.bindings] == [(f"{ns}/p", good)]
        # each bad node has a Warning Event naming it and the field
        ctl.status.drain()

        def reasons(node):
            # only kai's: the node lifecycle controller adds its own (a Normal ``RegisteredNode``)
            evs = client.get("/api/v1/namespaces/default/events",
                             params={"fieldSelector": f"involvedObject.name={node}"})["items"]
            return [(e["reason"], e["type"], e["message"]) for e in evs
                    if (e.get("source") or {}).get("component") == COMPONENT]
        _wait(lambda: reasons(huge) and reasons(many), what="InvalidObject events")
        (reason, etype, message), = reasons(huge)
        assert reason == "InvalidObject" and etype == "Warning" and f"Node {huge}" in message and "10e399" in message
        # fixed by its owner: the watch delivers a good version, the node is used and no longer counted
        client.patch(f"/api/v1/nodes/{huge}/status", {"status": {"allocatable": {"cpu": "8"},
                                                                 "capacity": {"cpu": "8"}}}, kind="strategic")
        _wait(lambda: ctl.drain() >= 0 and huge in ctl.state.nodes.by_name, what="fixed node in the cache")
        assert huge not in ctl.invalid["Node"] and many in ctl.invalid["Node"]
        # deleted while invalid: forgotten
        client.delete(f"/api/v1/nodes/{many}")
        _wait(lambda: ctl.drain() >= 0 and many not in ctl.invalid["Node"], what="deleted bad node forgotten")
        assert _metric(ctl, "kai_invalid_objects", kind="Node") == len(ctl.invalid["Node"])
    finally:
        ctl.stop()
        gc.unfreeze()
        for n in (good, huge, many):
            try:
                client.delete(f"/api/v1/nodes/{n}")
            except Exception:   # noqa: BLE001 - already gone
                pass


def _wait(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
