"""Selective monitoring on a real kube-apiserver: ``--pod-label-selector`` and
``--namespace-label-selector`` (kai.cache.scope) keep everything outside the selection out
of the informers' stores and the ClusterState, while every pod bound to a node is still
charged. A selected pod is scheduled and, once bound, moves from the unbound-pod informer to
the bound-pod informer without leaving the state. A namespace that gains the label brings its
pods in."""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kai.cache.kubeclient import KubeClient, load_kubeconfig
from kai.cache.scope import Scope
from kai.config import default_config
from kai.controller.main import Controller
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

SCHED = "kai-selective-test"
CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "kai-scheduler" / "crds"


def _wait(pred, timeout=30.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def client(control_plane) -> KubeClient:
    c = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    for f in sorted(CRD_DIR.glob("*.yaml")):
        status, body = control_plane.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                                 yaml.safe_load(f.read_text()))
        assert status in (201, 409), body
    _wait(lambda: _served(c), what="CRDs served")
    return c


def _served(c):
    try:
        return bool(c.get("/apis/scheduling.run.ai/v2alpha2").get("resources"))
    except Exception:   # noqa: BLE001 - not yet
        return False


def _ns(control_plane, labels):
    name = f"sel-{uuid.uuid4().hex[:8]}"
    status, body = control_plane.api_request("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    assert status == 201, body
    control_plane.wait_default_service_account(name)
    return name


def _pod(c, ns, name, labels, node="", sched=SCHED, group="g"):
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": {"pod-group-name": group}},
            "spec": {"schedulerName": sched, "containers": [{"name": "c", "image": "busybox",
                                                             "resources": {"requests": {"cpu": "1"}}}]}}
    if node:
        body["spec"]["nodeName"] = node
    c.post(f"/api/v1/namespaces/{ns}/pods", body)
    return f"{ns}/{name}"


def _pg(c, ns, name="g"):
    c.post(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups", {
        "apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": name},
        "spec": {"minMember": 1, "queue": "sel-q"}})


def test_outside_the_selection_is_never_cached(client, control_plane):
    c = client
    node = f"sel-node-{uuid.uuid4().hex[:6]}"
    control_plane.create_node(fake_node_manifest(node, gpus=0, cpu="4", memory="8Gi"))
    control_plane.wait_nodes_ready([node])
    for q in ({"metadata": {"name": "sel-root"}}, {"metadata": {"name": "sel-q"}, "spec": {"parentQueue": "sel-root"}}):
        r = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
        body = {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": q["metadata"],
                "spec": {**q.get("spec", {}), "resources": {"gpu": r, "cpu": r, "memory": r}}}
        status, _ = control_plane.api_request("POST", "/apis/scheduling.run.ai/v2/queues", body)
    ns_in, ns_out = _ns(control_plane, {"team": "ml"}), _ns(control_plane, {"team": "web"})
    for ns in (ns_in, ns_out):
        _pg(c, ns)
    selected = _pod(c, ns_in, "selected", {"app": "batch"})
    unlabelled = _pod(c, ns_in, "unlabelled", {"app": "web"})
    wrong_ns = _pod(c, ns_out, "wrong-ns", {"app": "batch"})
    foreign = _pod(c, ns_out, "foreign", {}, node=node, sched="default-scheduler")    # uses capacity

    ctl = Controller(client, default_config(), scheduler_name=SCHED, group_pods=False, status_workers=1,
                     scope=Scope(node_pool_label_key="", pod_label_selector="app=batch",
                                 namespace_label_selector="team=ml"))
    stop = threading.Event()
    try:
        ctl.start()
        assert ctl.initial_sync(stop, timeout=60)
        pods, bound, pgs = ctl.informers["Pod"], ctl.informers["NodePod"], ctl.informers["PodGroup"]
        assert pods.params == {"labelSelector": "app=batch", "fieldSelector": f"spec.schedulerName={SCHED},spec.nodeName="}
        assert set(pods.store) == {selected}
        assert foreign in bound.store and not {selected, unlabelled, wrong_ns} & set(bound.store)
        assert set(pgs.store) == {f"{ns_in}/g"}
        keys = {p.key for p in ctl.state.pods.values()}
        assert {selected, foreign} <= keys and not {unlabelled, wrong_ns} & keys
        assert ctl.state.nodes.by_name[node] is not None

        # schedule the selected pod: once bound it lives on through the bound-pod informer
        def bound_now():
            ctl.cycle(leader=True)
            return c.get(f"/api/v1/namespaces/{ns_in}/pods/selected")["spec"].get("nodeName")
        assert _wait(bound_now, what="the selected pod bound") == node
        _wait(lambda: selected in bound.store and selected not in pods.store, what="the pod moving informers")
        for _ in range(3):
            ctl.cycle(leader=True)
        p = next(p for p in ctl.state.pods.values() if p.key == selected)
        assert p.node_name == node
        assert ctl.binder.bind_count == 1

        # a namespace that gains the label brings its selected pods (and PodGroups) in
        c.patch(f"/api/v1/namespaces/{ns_out}", {"metadata": {"labels": {"team": "ml"}}})

        def arrived():
            ctl.drain()
            return wrong_ns in pods.store and f"{ns_out}/g" in pgs.store
        _wait(arrived, what="the relabelled namespace's pod")
        assert unlabelled not in pods.store and unlabelled not in {p.key for p in ctl.state.pods.values()}

        # a deleted namespace (its DELETED event, as the informer hands it over) takes its pods
        # out and leaves no entry behind: namespaces come and go for good in CI-style clusters
        ctl.apply("Namespace", "DELETED", ctl.informers["Namespace"].store[ns_out])
        assert ns_out not in ctl._ns_selected and ctl._ns_selected[ns_in] is True

        def left():
            ctl.drain()
            return wrong_ns not in pods.store and f"{ns_out}/g" not in pgs.store
        _wait(left, what="the deleted namespace's pod and PodGroup gone")
    finally:
        stop.set()
        ctl.stop()
        client.delete(f"/api/v1/nodes/{node}")
        for ns in (ns_in, ns_out):
            control_plane.api_request("DELETE", f"/api/v1/namespaces/{ns}")
