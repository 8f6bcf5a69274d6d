"""KubeRay groupers: minMember, head and worker-group SubGroups (cases from KAI's
ray_grouper_test.go)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, owned_by, shape
from kai.podgrouper.metadata import GroupingError

GROUPS = [{"replicas": 3, "minReplicas": 2}, {"replicas": 3, "minReplicas": 1}]


def cluster(workers, api="ray.io/v1alpha1", labels=None, head=None, name="test_ray_cluster", uid="1", **spec):
    return obj("RayCluster", name, uid, api, spec={"headGroupSpec": head or {}, "workerGroupSpecs": workers, **spec},
               labels={"test_label": "test_value", **(labels or {})}, annotations={"test_annotation": "test_value"})


def member(o, name, group_name):
    return owned_by(o, name, f"uid-{name}", labels={"ray.io/group": group_name})


@pytest.mark.parametrize("workers,spec,expected_min,expected_groups", [
    (GROUPS, {"enableInTreeAutoscaling": True}, 4, [("headgroup", 1), ("worker-group-0", 2), ("worker-group-1", 1)]),
    (GROUPS, {}, 4, [("headgroup", 1), ("worker-group-0", 2), ("worker-group-1", 1)]),
    ([GROUPS[0], {**GROUPS[1], "suspended": True}], {}, 3, [("headgroup", 1), ("worker-group-0", 2)]),
    ([{"numOfHosts": 2, **GROUPS[0]}, {"numOfHosts": 3, **GROUPS[1]}], {}, 8,
     [("headgroup", 1), ("worker-group-0", 4), ("worker-group-1", 3)]),
    ([{"groupName": "gpu-workers", **GROUPS[0]}, {"groupName": "cpu-workers", **GROUPS[1]}], {}, 4,
     [("headgroup", 1), ("gpu-workers", 2), ("cpu-workers", 1)]),
    ([{"replicas": 4}], {}, 5, [("headgroup", 1), ("worker-group-0", 4)]),
    ([{"replicas": 0, "minReplicas": 0}], {}, 1, [("headgroup", 1)]),
    ([], {}, 1, [("headgroup", 1)]),
])
def test_raycluster(workers, spec, expected_min, expected_groups):
    o = cluster(workers, **spec)
    m = group(member(o, "head", "headgroup"), o)
    assert (m.name, m.owner.kind, m.owner.api_version, m.min_available) == ("pg-test_ray_cluster-1", "RayCluster",
                                                                            "ray.io/v1alpha1", expected_min)
    assert [(s.name, s.min_available) for s in m.subgroups] == expected_groups
    assert m.subgroups[0].pods == ["head"]


def test_pods_join_their_worker_group_and_priority_label():
    o = cluster([{"groupName": "gpu-workers", **GROUPS[0]}], labels={"ray.io/priority-class-name": "ray_train"})
    m = group(member(o, "w", "gpu-workers"), o)
    assert shape(m) == [("headgroup", 1, None, ()), ("gpu-workers", 2, None, ("w",))]
    assert m.priority_class_name == "ray_train"
    # a pod whose group is unknown is in no SubGroup
    assert all(not s.pods for s in group(member(o, "x", "nope"), o).subgroups)


def test_rayjob_and_rayservice_use_their_cluster():
    rc = cluster(GROUPS, name="rj-raycluster", uid="c1")
    rj = obj("RayJob", "rj", "rj-u", "ray.io/v1alpha1", spec={}, status={"rayClusterName": "rj-raycluster"})
    m = group(owned_by(rj, "p"), rj, rc)
    assert (m.name, m.owner.kind, m.min_available, len(m.subgroups)) == ("pg-rj-rj-u", "RayJob", 4, 3)
    rc1 = cluster(GROUPS, api="ray.io/v1", name="rj-raycluster", uid="c1")
    rj1 = obj("RayJob", "rj", "rj-u", "ray.io/v1", spec={}, status={"rayClusterName": "rj-raycluster"})
    assert group(owned_by(rj1, "p"), rj1, rc1).owner.api_version == "ray.io/v1"
    rs = obj("RayService", "rs", "rs-u", "ray.io/v1alpha1", spec={},
             status={"pendingServiceStatus": {"rayClusterName": "rj-raycluster"}})
    assert group(owned_by(rs, "p"), rs, rc).min_available == 4
    no_status = obj("RayJob", "rj", "rj-u", "ray.io/v1alpha1", spec={})
    with pytest.raises(GroupingError, match="failed to extract rayClusterName"):
        group(owned_by(no_status, "p"), no_status)
    with pytest.raises(GroupingError, match="not found"):
        group(owned_by(rj, "p"), rj)


def test_existing_podgroup_without_subgroups_stays_flat():
    o = cluster(GROUPS)
    legacy = {"metadata": {"name": "pg-test_ray_cluster-1", "namespace": "test_namespace"}, "spec": {"minMember": 2}}
    m = group(member(o, "head", "headgroup"), o, podgroups=[legacy])
    assert (m.min_available, m.subgroups) == (4, [])
    migrated = {"metadata": {"name": "pg-test_ray_cluster-1", "namespace": "test_namespace"},
                "spec": {"minMember": 2, "subGroups": [{"name": "headgroup", "minMember": 1}]}}
    assert len(group(member(o, "head", "headgroup"), o, podgroups=[migrated]).subgroups) == 3


def test_group_topology_from_templates():
    def tmpl(topology, required, preferred):
        return {"template": {"metadata": {"annotations": {
            "kai.scheduler/topology": topology, "kai.scheduler/topology-required-placement": required,
            "kai.scheduler/topology-preferred-placement": preferred}}}}
    head = tmpl("test-topology", "rack", "node")
    o = cluster([{"groupName": "gpu-workers", **GROUPS[0], **tmpl("test-topology", "zone", "rack")},
                 {"groupName": "cpu-workers", **GROUPS[1]}], head=head)
    m = group(member(o, "h", "headgroup"), o)
    t = [(s.name, s.topology and (s.topology.topology, s.topology.required, s.topology.preferred))
         for s in m.subgroups]
    assert t == [("headgroup", ("test-topology", "rack", "node")), ("gpu-workers", ("test-topology", "zone", "rack")),
                 ("cpu-workers", None)]
    bad = cluster([{"groupName": "g", **GROUPS[0], "template": {"metadata": {"annotations": {
        "kai.scheduler/topology-required-placement": "zone"}}}}])
    with pytest.raises(GroupingError, match="topology annotation"):
        group(member(bad, "h", "headgroup"), bad)


def test_min_replicas_above_replicas_is_an_error():
    o = cluster([{"replicas": 1, "minReplicas": 2}])
    with pytest.raises(GroupingError, match="Please fix the replicas field for group number 0"):
        group(member(o, "h", "headgroup"), o)
