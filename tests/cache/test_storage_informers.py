"""Storage informers against a real kube-apiserver (v1.34): every kind kai's volume filters read
arrives decoded (the API's nulls included), ConfigMaps arrive as metadata only, and deletions
reach the StorageStore."""
from __future__ import annotations

import queue
import time

import pytest

from kai.cache.kubeclient import KubeClient, load_kubeconfig
from kai.cache.storage_store import StorageStore
from kai.cache.watch import INVALID, SYNCED, start_informers

pytestmark = pytest.mark.integration
KINDS = ("PersistentVolume", "PersistentVolumeClaim", "StorageClass", "CSINode", "CSIDriver", "CSIStorageCapacity",
         "VolumeAttachment", "ConfigMap")
ST = "/apis/storage.k8s.io/v1"


def _pump(events: queue.Queue, store: StorageStore, until, invalid: list, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kind, etype, obj = events.get(timeout=0.1)
        except queue.Empty:
            kind = None
        if kind is not None and etype == INVALID:
            invalid.append(obj)
        elif kind is not None and etype != SYNCED:
            store.apply(kind, etype, obj)
        if until():
            return
    raise AssertionError(f"timed out waiting for storage objects (invalid: {invalid})")


def test_storage_objects_reach_the_store(control_plane, kube_namespace):
    client = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    ns, tag = kube_namespace, kube_namespace[-10:]
    events: queue.Queue = queue.Queue()
    infs = start_informers(client, events, kinds=KINDS, watch_timeout=(30, 30))
    store, invalid = StorageStore(), []
    try:
        for inf in infs.values():
            assert inf.synced.wait(20), inf.kind
        client.post(f"{ST}/storageclasses", {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": f"sc-{tag}"}, "provisioner": "kai.test/p",
                    "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}]})
        # drivers' topologyKeys are sent as null when unset
        client.post(f"{ST}/csinodes", {"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
                    "metadata": {"name": f"node-{tag}"},
                    "spec": {"drivers": [{"name": "d.example.com", "nodeID": "x", "allocatable": {"count": 3}}]}})
        client.post(f"{ST}/csidrivers", {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                    "metadata": {"name": f"d-{tag}.example.com"}, "spec": {"storageCapacity": True}})
        client.post(f"{ST}/namespaces/{ns}/csistoragecapacities", {
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity", "metadata": {"name": "cap"},
            "storageClassName": f"sc-{tag}", "capacity": "10Gi",
            "nodeTopology": {"matchLabels": {"zone": "a"}}})
        client.post("/api/v1/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": f"pv-{tag}"},
                    "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                             "csi": {"driver": "d.example.com", "volumeHandle": "h"}}})
        client.post(f"{ST}/volumeattachments", {"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
                    "metadata": {"name": f"va-{tag}"},
                    "spec": {"attacher": "d.example.com", "nodeName": f"node-{tag}",
                             "source": {"persistentVolumeName": f"pv-{tag}"}}})
        client.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": f"sc-{tag}",
                     "resources": {"requests": {"storage": "1Gi"}}}})
        client.post(f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "settings", "labels": {"a": "b"}, "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": "x" * 10000}},
                    "data": {"big": "x" * 10000}})

        def arrived():
            return (f"pv-{tag}" in store.volumes and f"{ns}/data" in store.claims and f"sc-{tag}" in store.classes
                    and f"node-{tag}" in store.csinodes and f"d-{tag}.example.com" in store.drivers
                    and f"{ns}/cap" in store.capacities and f"va-{tag}" in store.attachments
                    and store.has_configmap(ns, "settings"))
        _pump(events, store, arrived, invalid)
        assert not invalid
        assert store.csinodes[f"node-{tag}"].spec.drivers[0].allocatable.count == 3
        assert store.drivers[f"d-{tag}.example.com"].spec.storage_capacity is True
        assert store.capacities[f"{ns}/cap"].node_topology.match_labels == {"zone": "a"}
        assert store.attachments[f"va-{tag}"].spec.source.persistent_volume_name == f"pv-{tag}"
        assert store.classes[f"sc-{tag}"].volume_binding_mode == "Immediate"       # defaulted by the API
        assert store.has_configmap(ns, "kube-root-ca.crt")                         # the CA publisher's
        # the ConfigMap informer asks for metadata only and keeps the identity: no data, no
        # annotations (kubectl's last-applied copy of the data), no labels
        cm = infs["ConfigMap"].store[f"{ns}/settings"]
        assert cm.kind == "PartialObjectMetadata" and cm.metadata.name == "settings"
        assert not hasattr(cm.metadata, "annotations") and not hasattr(cm, "data")

        client.delete(f"/api/v1/namespaces/{ns}/configmaps/settings")
        client.delete(f"{ST}/volumeattachments/va-{tag}")
        _pump(events, store, lambda: not store.has_configmap(ns, "settings") and f"va-{tag}" not in store.attachments,
              invalid)
    finally:
        for inf in infs.values():
            inf.stop(timeout=2)
        for path in (f"{ST}/storageclasses/sc-{tag}", f"{ST}/csinodes/node-{tag}", f"{ST}/csidrivers/d-{tag}.example.com",
                     f"/api/v1/persistentvolumes/pv-{tag}"):
            try:
                client.delete(path)
            except Exception:   # noqa: BLE001 - best effort
                pass
