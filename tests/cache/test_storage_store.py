"""kai.cache.storage_store: events and indexes, the assume cache, and node masks (PV node affinity
as kube-scheduler's CheckNodeAffinity reads it, VolumeZone, allowedTopologies, label selectors,
CSINode limits) over a real NodeTable."""
from __future__ import annotations

import msgspec
import numpy as np
import pytest

from kai.api.k8s import LabelSelector, Node
from kai.api.storage import ClaimPlan, ConfigMap, CSINode, PersistentVolume, PersistentVolumeClaim, StorageClass
from kai.cache.node_table import NodeTable
from kai.api.resources import ResourceRegistry
from kai.cache.storage_store import StorageStore

NODES = {"n1": {"kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "a", "rank": "3"},
         "n2": {"kubernetes.io/hostname": "n2", "failure-domain.beta.kubernetes.io/zone": "b", "rank": "7"},
         "n3": {"kubernetes.io/hostname": "n3"}}


@pytest.fixture
def table() -> NodeTable:
    t = NodeTable(ResourceRegistry())
    for name, labels in NODES.items():
        t.upsert(msgspec.convert({"metadata": {"name": name, "labels": labels},
                                  "status": {"allocatable": {"cpu": "1"}}}, Node))
    return t


def names(table, mask) -> list[str]:
    return sorted(table.infos[i].name for i in np.flatnonzero(mask))


def pv(name="pv", affinity=None, claim=None, labels=None, rv="1", cls="local") -> PersistentVolume:
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls}
    if affinity is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": affinity}}
    if claim is not None:
        spec["claimRef"] = {"namespace": "ns", "name": claim}
    return msgspec.convert({"metadata": {"name": name, "resourceVersion": rv, "labels": labels or {}}, "spec": spec},
                           PersistentVolume)


def pvc(name="c", **spec) -> PersistentVolumeClaim:
    meta = {"name": name, "namespace": "ns", "annotations": spec.pop("annotations", {})}
    return msgspec.convert({"metadata": meta, "spec": spec}, PersistentVolumeClaim)


def expr(key, op, *values):
    return {"key": key, "operator": op, "values": list(values)}


@pytest.mark.parametrize("terms,want", [
    ([{"matchExpressions": [expr("kubernetes.io/hostname", "In", "n2")]}], ["n2"]),
    ([{"matchExpressions": [expr("topology.kubernetes.io/zone", "In", "a")]},
      {"matchExpressions": [expr("rank", "Gt", "5")]}], ["n1", "n2"]),
    ([{"matchExpressions": [expr("rank", "Lt", "5")]}], ["n1"]),
    ([{"matchExpressions": [expr("topology.kubernetes.io/zone", "DoesNotExist")]}], ["n2", "n3"]),
    ([{}], []),                                                              # an empty term matches nothing
    # kube-scheduler checks PV affinity against a node that has labels only: matchFields on the
    # name never match In, and always match NotIn
    ([{"matchFields": [expr("metadata.name", "In", "n1")]}], []),
    ([{"matchFields": [expr("metadata.name", "NotIn", "n1")]}], ["n1", "n2", "n3"]),
    ([{"matchFields": [expr("metadata.name", "NotIn", "n1")],
       "matchExpressions": [expr("rank", "Exists")]}], ["n1", "n2"]),
])
def test_volume_nodes(table, terms, want):
    s = StorageStore()
    assert names(table, s.volume_nodes(pv(affinity=terms), table)) == want
    assert s.volume_nodes(pv(), table) is None


def test_masks_are_cached_until_the_pv_or_nodes_change(table):
    s = StorageStore()
    v = pv(affinity=[{"matchExpressions": [expr("kubernetes.io/hostname", "In", "n3")]}])
    m = s.volume_nodes(v, table)
    assert s.volume_nodes(v, table) is m and not m.flags.writeable
    table.upsert(msgspec.convert({"metadata": {"name": "n4", "labels": {"kubernetes.io/hostname": "n3"}},
                                  "status": {"allocatable": {"cpu": "1"}}}, Node))
    assert names(table, s.volume_nodes(v, table)) == ["n3", "n4"]      # hostname label n3 on n4 too


def test_zone_nodes(table):
    s = StorageStore()
    a = pv(labels={"topology.kubernetes.io/zone": "a"})
    assert names(table, s.zone_nodes(a, table)) == ["n1", "n3"]          # n3 has no zone labels: passes
    beta_b = pv(name="b", labels={"failure-domain.beta.kubernetes.io/zone": "b__c"})
    assert names(table, s.zone_nodes(beta_b, table)) == ["n2", "n3"]
    # a GA-labelled PV against a beta-labelled node: kube-scheduler looks the PV's key up, then its GA
    # name (never the beta name), so n2 fails
    ga_b = pv(name="gb", labels={"topology.kubernetes.io/zone": "b"})
    assert names(table, s.zone_nodes(ga_b, table)) == ["n3"]
    assert s.zone_nodes(pv(), table) is None


def test_topology_and_selector_nodes(table):
    s = StorageStore()
    sc = msgspec.convert({"metadata": {"name": "fast"}, "provisioner": "p", "allowedTopologies": [
        {"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a"]}]},
        {"matchLabelExpressions": [{"key": "rank", "values": ["7"]}]}]}, StorageClass)
    s.apply("StorageClass", "ADDED", sc)
    assert names(table, s.topology_nodes("fast", table)) == ["n1", "n2"]
    s.apply("StorageClass", "ADDED", msgspec.convert({"metadata": {"name": "any"}, "provisioner": "p"}, StorageClass))
    assert names(table, s.topology_nodes("any", table)) == ["n1", "n2", "n3"]
    sel = msgspec.convert({"matchExpressions": [{"key": "rank", "operator": "Exists"}]}, LabelSelector)
    assert names(table, s.selector_nodes(("cap",), sel, table)) == ["n1", "n2"]
    assert names(table, s.selector_nodes(("all",), LabelSelector(), table)) == ["n1", "n2", "n3"]
    assert names(table, s.selector_nodes(("none",), None, table)) == []


def test_indexes_follow_events():
    s = StorageStore()
    s.apply("PersistentVolume", "ADDED", pv("a", claim="c1"))
    s.apply("PersistentVolume", "ADDED", pv("b", cls="fast"))
    assert s.by_class == {"local": {"a"}, "fast": {"b"}} and s.claimed_by == {"ns/c1": {"a"}}
    s.apply("PersistentVolume", "MODIFIED", pv("a", claim="c2", cls="fast"))
    assert s.by_class["local"] == set() and s.by_class["fast"] == {"a", "b"}
    assert s.claimed_by["ns/c1"] == set() and s.claimed_by["ns/c2"] == {"a"}
    v0 = s.version
    s.apply("PersistentVolume", "DELETED", pv("a"))
    assert "a" not in s.volumes and s.by_class["fast"] == {"b"} and s.version > v0
    s.apply("PersistentVolumeClaim", "ADDED", pvc())
    assert set(s.claims) == {"ns/c"} and len(s) == 2


def test_assume_and_release():
    s = StorageStore()
    s.apply("PersistentVolume", "ADDED", pv("a"))
    s.apply("PersistentVolumeClaim", "ADDED", pvc("c1"))
    s.apply("PersistentVolumeClaim", "ADDED", pvc("c2"))
    s.assume("pod-1", [ClaimPlan(namespace="ns", name="c1", uid="u1", volume="a"),
                       ClaimPlan(namespace="ns", name="c2")], "n2")
    assert s.volume_claim(s.volumes["a"]) == ("ns/c1", "u1") and s.assumed_volumes("ns/c1") == ["a"]
    assert s.selected_node(s.claims["ns/c2"], "ns/c2") == "n2"
    s.release("pod-1")
    assert s.volume_claim(s.volumes["a"]) is None and s.selected_node(s.claims["ns/c2"], "ns/c2") is None


def test_watch_supersedes_assumptions():
    s = StorageStore()
    s.apply("PersistentVolume", "ADDED", pv("a"))
    s.apply("PersistentVolumeClaim", "ADDED", pvc("c2"))
    s.assume("pod-1", [ClaimPlan(namespace="ns", name="c1", volume="a"), ClaimPlan(namespace="ns", name="c2")], "n2")
    s.apply("PersistentVolume", "MODIFIED", pv("a", rv="2"))                # unrelated update: still assumed
    assert s.volume_claim(s.volumes["a"]) == ("ns/c1", "")
    s.apply("PersistentVolume", "MODIFIED", pv("a", claim="c1", rv="3"))    # the binder's write arrives
    assert s.assumed_volumes("ns/c1") == [] and s.volume_claim(s.volumes["a"]) == ("ns/c1", "")
    s.apply("PersistentVolumeClaim", "MODIFIED",
            pvc("c2", annotations={"volume.kubernetes.io/selected-node": "n2"}))
    s.release("pod-1")                                                      # nothing left to release
    assert s.selected_node(s.claims["ns/c2"], "ns/c2") == "n2"             # the API's annotation


def test_volume_limits(table):
    s = StorageStore()
    s.apply("CSINode", "ADDED", msgspec.convert({"metadata": {"name": "n1"}, "spec": {"drivers": [
        {"name": "d1", "allocatable": {"count": 2}}, {"name": "d2"}]}}, CSINode))
    s.apply("CSINode", "ADDED", msgspec.convert({"metadata": {"name": "ghost"}, "spec": {"drivers": [
        {"name": "d1", "allocatable": {"count": 9}}]}}, CSINode))
    lim = s.volume_limits(table)
    assert set(lim) == {"d1"}
    assert lim["d1"][table.by_name["n1"].idx] == 2 and lim["d1"][table.by_name["n2"].idx] == -1


def test_configmap_names_only():
    s = StorageStore()
    cm = msgspec.convert({"metadata": {"name": "a", "namespace": "ns"}},
                         ConfigMap)
    s.apply("ConfigMap", "ADDED", cm)
    assert s.has_configmap("ns", "a") and not s.has_configmap("other", "a")
    s.apply("ConfigMap", "DELETED", cm)
    assert not s.has_configmap("ns", "a")
