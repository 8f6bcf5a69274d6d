"""DRA informers against a real kube-apiserver (v1.34, resource.k8s.io/v1): objects created as
a driver and a user would create them reach the DraStore decoded, and the allocator can use them."""
from __future__ import annotations

import queue
import time

import pytest

from kai.cache.dra_store import DraStore
from kai.cache.kubeclient import KubeClient, load_kubeconfig
from kai.cache.watch import INVALID, SYNCED, start_informers
from kai.dra.allocator import PodClaim

pytestmark = pytest.mark.integration
API = "/apis/resource.k8s.io/v1"
KINDS = ("ResourceSlice", "DeviceClass", "ResourceClaim", "ResourceClaimTemplate")


def _pump(events: queue.Queue, store: DraStore, until, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kind, etype, obj = events.get(timeout=0.1)
        except queue.Empty:
            kind = None
        if kind is not None and etype not in (SYNCED, INVALID):
            store.apply(kind, etype, obj)
        if until():
            return
    raise AssertionError("timed out waiting for DRA objects")


def test_dra_objects_reach_the_store(control_plane, kube_namespace):
    client = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    ns, tag = kube_namespace, kube_namespace[-10:]
    driver = f"gpu-{tag}.example.com"
    cls, node = f"gpu-{tag}", f"node-{tag}"
    events: queue.Queue = queue.Queue()
    infs = start_informers(client, events, kinds=KINDS, watch_timeout=(30, 30))
    store = DraStore()
    try:
        for inf in infs.values():
            assert inf.synced.wait(20), inf.kind
        client.post(f"{API}/deviceclasses", {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                    "metadata": {"name": cls},
                    "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]}})
        client.post(f"{API}/resourceslices", {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
                    "metadata": {"name": f"{node}-gpus"},
                    "spec": {"driver": driver, "nodeName": node,
                             "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                             "devices": [{"name": f"gpu-{i}", "attributes": {"index": {"int": i}},
                                          "capacity": {"memory": {"value": "80Gi"}}} for i in range(4)]}})
        spec = {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": cls, "count": 2}}],
                            "constraints": []}}
        client.post(f"{API}/namespaces/{ns}/resourceclaimtemplates", {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": "two-gpus"}, "spec": {"spec": spec}})
        client.post(f"{API}/namespaces/{ns}/resourceclaims", {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "shared"}, "spec": spec})
        _pump(events, store, lambda: cls in store.classes and f"{node}-gpus" in store.slices
              and f"{ns}/two-gpus" in store.templates and f"{ns}/shared" in store.claims)
        claim = store.claims[f"{ns}/shared"]
        assert claim.spec.devices.requests[0].exactly.count == 2
        assert store.slices[f"{node}-gpus"].spec.devices[3].attributes["index"].int_ == 3
        al = store.allocator([node])
        req = al.prepare([PodClaim("shared", f"{ns}/shared", claim)])
        assert al.feasible(req).tolist() == [1]
        got = al.allocate(req, 0)
        assert [r["device"] for r in got.claims[0].results] == ["gpu-0", "gpu-1"]
        client.delete(f"{API}/resourceslices/{node}-gpus")
        _pump(events, store, lambda: f"{node}-gpus" not in store.slices)
        assert store.inventory([node]).n_devices == 0
    finally:
        for inf in infs.values():
            inf.stop(timeout=2.0)
        for path in (f"{API}/deviceclasses/{cls}", f"{API}/resourceslices/{node}-gpus"):
            try:
                client.delete(path)
            except Exception:   # noqa: BLE001 - best-effort cleanup of cluster-scoped objects
                pass
