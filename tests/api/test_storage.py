"""kai.api.storage: decoding the storage objects, kube-scheduler's node-independent volume rules,
validation messages, and the fail-closed table now honouring PVC and ephemeral volumes."""
from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from kai.api.k8s import LabelSelector, Pod
from kai.api.pod_fields import HONOURED, NOT_HONOURED, unhonoured
from kai.api.storage import (CSINode, ConfigMap, PersistentVolume, PersistentVolumeClaim, StorageClass, access_modes_ok,
                             capacity_limit, CSIStorageCapacity, claim_class, ephemeral_claim_name, is_bound_to_claim,
                             is_controlled_by, is_fully_bound, label_selector_matches, pod_claims, requested_storage,
                             validate, volume_capacity, volume_class, volume_mode_mismatch, zone_topologies)

PV_JSON = b"""{"apiVersion": "v1", "kind": "PersistentVolume",
 "metadata": {"name": "pv1", "resourceVersion": "5", "labels": {"topology.kubernetes.io/zone": "a__b"}},
 "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
          "local": {"path": "/mnt"}, "persistentVolumeReclaimPolicy": "Retain",
          "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "ns", "name": "data", "uid": "u1"},
          "csi": {"driver": "d.example.com", "volumeHandle": "h1", "fsType": "ext4"},
          "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
              {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}},
 "status": {"phase": "Bound"}}"""


def pvc(**spec) -> PersistentVolumeClaim:
    meta = spec.pop("metadata", {"name": "data", "namespace": "ns", "uid": "u1"})
    status = spec.pop("status", {})
    return msgspec.convert({"metadata": meta, "spec": spec, "status": status}, PersistentVolumeClaim)


def pv(**spec) -> PersistentVolume:
    meta = spec.pop("metadata", {"name": "pv"})
    return msgspec.convert({"metadata": meta, "spec": spec}, PersistentVolume)


def test_pv_decodes_from_api_json():
    v = msgspec.json.decode(PV_JSON, type=PersistentVolume)
    assert v.spec.claim_ref.uid == "u1" and v.spec.csi.volume_handle == "h1" and v.status.phase == "Bound"
    assert v.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values == ["n1"]
    assert volume_capacity(v) == Decimal(10 * 2**30)
    assert zone_topologies(v) == [("topology.kubernetes.io/zone", frozenset({"a", "b"}))]


def test_other_kinds_decode():
    sc = msgspec.convert({"metadata": {"name": "fast"}, "provisioner": "p", "volumeBindingMode": "WaitForFirstConsumer",
                          "allowedTopologies": [{"matchLabelExpressions": [{"key": "z", "values": ["a"]}]}]},
                         StorageClass)
    assert sc.allowed_topologies[0].match_label_expressions[0].values == ["a"]
    cn = msgspec.convert({"metadata": {"name": "n1"}, "spec": {"drivers": [
        {"name": "d", "nodeID": "i-1", "allocatable": {"count": 39}}, {"name": "e", "nodeID": "x"}]}}, CSINode)
    assert cn.spec.drivers[0].allocatable.count == 39 and cn.spec.drivers[1].allocatable is None
    # the API sends lists without omitempty as null
    nulls = msgspec.json.decode(b'{"metadata": {"name": "n"}, "spec": {"drivers": [{"name": "d", "nodeID": "x", '
                                b'"topologyKeys": null}]}}', type=CSINode)
    assert nulls.spec.drivers[0].topology_keys is None
    assert msgspec.json.decode(b'{"metadata": {"name": "n"}, "spec": {"drivers": null}}', type=CSINode).spec.drivers is None
    # a PartialObjectMetadata item (the ConfigMap informer's) decodes as a ConfigMap
    cm = msgspec.json.decode(b'{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", '
                             b'"metadata": {"name": "c", "namespace": "ns"}}', type=ConfigMap)
    assert cm.metadata.name == "c"


def test_claim_and_volume_class_beta_annotation_wins():
    c = pvc(storageClassName="new", metadata={"name": "c", "annotations": {
        "volume.beta.kubernetes.io/storage-class": "old"}})
    assert claim_class(c) == "old" and claim_class(pvc()) == ""
    v = pv(storageClassName="x", metadata={"name": "v", "annotations": {"volume.beta.kubernetes.io/storage-class": "y"}})
    assert volume_class(v) == "y"


def test_fully_bound():
    assert not is_fully_bound(pvc(volumeName="pv"))
    assert is_fully_bound(pvc(volumeName="pv", metadata={"name": "c", "annotations": {
        "pv.kubernetes.io/bind-completed": "yes"}}))
    assert is_fully_bound(pvc(volumeName="pv", status={"phase": "Bound"}))
    assert not is_fully_bound(pvc(status={"phase": "Bound"}))


def test_bound_to_claim_checks_uid_only_when_set():
    v = pv(claimRef={"namespace": "ns", "name": "data"})
    assert is_bound_to_claim(v, "ns", "data", "anything")
    assert not is_bound_to_claim(v, "other", "data", "")
    v = pv(claimRef={"namespace": "ns", "name": "data", "uid": "u1"})
    assert is_bound_to_claim(v, "ns", "data", "u1") and not is_bound_to_claim(v, "ns", "data", "u2")
    assert not is_bound_to_claim(pv(), "ns", "data", "u1")


def test_modes_and_sizes():
    c = pvc(accessModes=["ReadWriteOnce", "ReadOnlyMany"], resources={"requests": {"storage": "1G"}})
    assert requested_storage(c) == Decimal(10**9)
    assert access_modes_ok(c, pv(accessModes=["ReadOnlyMany", "ReadWriteOnce", "ReadWriteMany"]))
    assert not access_modes_ok(c, pv(accessModes=["ReadWriteOnce"]))
    assert not volume_mode_mismatch(c, pv())
    assert volume_mode_mismatch(c, pv(volumeMode="Block"))
    assert volume_mode_mismatch(pvc(volumeMode="Block"), pv())
    assert volume_capacity(pv(capacity={"storage": "junk"})) == -1       # never fits
    cap = msgspec.convert({"metadata": {"name": "c"}, "capacity": "10Gi", "maximumVolumeSize": "2Gi"},
                          CSIStorageCapacity)
    assert capacity_limit(cap) == Decimal(2 * 2**30)


def test_zone_labels_malformed_value_is_ignored():
    v = pv(metadata={"name": "v", "labels": {"failure-domain.beta.kubernetes.io/zone": "a____b",
                                             "topology.kubernetes.io/region": "r1"}})
    assert zone_topologies(v) == [("topology.kubernetes.io/region", frozenset({"r1"}))]


@pytest.mark.parametrize("sel,labels,want", [
    ({}, {}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, {"a": ""}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, {"a": "2"}, False),
])
def test_label_selector(sel, labels, want):
    assert label_selector_matches(msgspec.convert(sel, LabelSelector), labels) is want
    assert label_selector_matches(None, {"x": "y"})


def test_pod_claims_and_ephemeral_ownership():
    pod = msgspec.convert({"metadata": {"name": "web-0", "namespace": "ns", "uid": "pu"}, "spec": {"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "cfg", "configMap": {"name": "c"}}]}}, Pod)
    assert pod_claims(pod) == [("data", "data-web-0", False), ("scratch", "web-0-scratch", True)]
    assert ephemeral_claim_name(pod, pod.spec.volumes[1]) == "web-0-scratch"
    owned = pvc(metadata={"name": "web-0-scratch", "namespace": "ns", "ownerReferences": [
        {"kind": "Pod", "name": "web-0", "uid": "pu", "controller": True}]})
    assert is_controlled_by(owned, pod)
    not_controller = pvc(metadata={"name": "web-0-scratch", "namespace": "ns", "ownerReferences": [
        {"kind": "Pod", "name": "web-0", "uid": "pu"}]})
    assert not is_controlled_by(not_controller, pod)
    assert not is_controlled_by(msgspec.structs.replace(owned, metadata=msgspec.structs.replace(
        owned.metadata, namespace="other")), pod)


@pytest.mark.parametrize("obj,expect", [
    (pv(accessModes=["ReadWriteOnce"]), "spec.capacity.storage: required"),
    (pv(capacity={"storage": "abc"}, accessModes=["ReadWriteOnce"]), "spec.capacity.storage: invalid quantity 'abc'"),
    (pv(capacity={"storage": "1Gi"}), "spec.accessModes: at least one access mode is required"),
    (pv(capacity={"storage": "1Gi"}, accessModes=["ReadWriteSometimes"]), "spec.accessModes[0]: unknown access mode"),
    (pv(capacity={"storage": "1Gi"}, accessModes=["ReadWriteOncePod", "ReadWriteOnce"]), "may not be used with other"),
    (pv(capacity={"storage": "1Gi"}, accessModes=["ReadWriteOnce"], nodeAffinity={}),
     "spec.nodeAffinity.required: must specify required node constraints"),
    (pvc(accessModes=["ReadWriteOnce"]), "spec.resources.requests.storage: required"),
    (pvc(accessModes=["ReadWriteOnce"], resources={"requests": {"storage": "-1"}}), "negative quantity"),
    (pvc(accessModes=["ReadWriteOnce"], volumeMode="Raw", resources={"requests": {"storage": "1"}}),
     "spec.volumeMode: 'Raw' is not one of Filesystem, Block"),
    (msgspec.convert({"metadata": {"name": "s"}}, StorageClass), "provisioner: required"),
    (msgspec.convert({"metadata": {"name": "s"}, "provisioner": "p", "volumeBindingMode": "Later"}, StorageClass),
     "volumeBindingMode: 'Later' is not one of Immediate, WaitForFirstConsumer"),
    (msgspec.convert({"metadata": {"name": "n"}, "spec": {"drivers": [{"name": "d", "allocatable": {"count": -1}}]}},
                     CSINode), "spec.drivers[0].allocatable.count: must be >= 0"),
])
def test_validate(obj, expect):
    problems = validate(obj)
    assert any(expect in p for p in problems), problems


def test_validate_accepts_good_objects():
    assert validate(msgspec.json.decode(PV_JSON, type=PersistentVolume)) == []
    assert validate(pvc(accessModes=["ReadWriteOnce"], resources={"requests": {"storage": "1Gi"}})) == []
    assert validate(pvc(accessModes=["ReadWriteOnce"], volumeName="pv")) == []     # pre-bound: size optional


def test_fail_closed_table_honours_claims_and_refuses_in_tree_disks():
    assert "spec.volumes[].persistentVolumeClaim" in HONOURED and "spec.volumes[].ephemeral" in HONOURED
    assert not any("persistentVolumeClaim" in k or "ephemeral" in k for k in NOT_HONOURED)
    pod = msgspec.convert({"metadata": {"name": "p"}, "spec": {"volumes": [
        {"name": "d", "persistentVolumeClaim": {"claimName": "c"}},
        {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}, Pod)
    assert unhonoured(pod) == []
    disk = msgspec.convert({"metadata": {"name": "p"}, "spec": {"volumes": [
        {"name": "d", "persistentVolumeClaim": {"claimName": "c"}},
        {"name": "g", "gcePersistentDisk": {"pdName": "x"}}]}}, Pod)
    (why,) = unhonoured(disk)
    assert why.startswith("spec.volumes[g].gcePersistentDisk (in-tree disk)")
