"""PodGroup metadata -> PodGroup object and API body; a pod's SubGroup."""
from __future__ import annotations

from kai.api.k8s import OwnerReference
from kai.podgrouper.metadata import (PodGroupMetadata, SubGroupMetadata, Topology, podgroup_body, subgroup_of,
                                     to_podgroup)


def meta(**kw):
    base = dict(name="pg-x-u", namespace="ns", owner=OwnerReference(api_version="batch/v1", kind="Job", name="x",
                                                                    uid="u"),
                queue="q", priority_class_name="train", min_available=3, labels={"a": "b"},
                annotations={"c": "d"})
    return PodGroupMetadata(**{**base, **kw})


def test_to_podgroup():
    m = meta(subgroups=[SubGroupMetadata("seg", 0, topology=Topology("t", "rack", "")),
                        SubGroupMetadata("leaf", 2, parent="seg", pods=["p"])],
             topology=Topology("t", "", "zone"))
    pg = to_podgroup(m, creation_timestamp="2024-01-01T00:00:00Z")
    assert (pg.metadata.name, pg.metadata.namespace, pg.metadata.labels, pg.metadata.annotations) == \
        ("pg-x-u", "ns", {"a": "b"}, {"c": "d"})
    assert pg.metadata.owner_references[0].kind == "Job"
    assert (pg.spec.min_member, pg.spec.queue, pg.spec.priority_class_name) == (3, "q", "train")
    assert pg.spec.topology_constraint.preferred_topology_level == "zone"
    # a zero minMember is dropped on the wire and reads back as the default
    assert [(s.name, s.min_member, s.parent) for s in pg.spec.sub_groups] == [("seg", 1, None), ("leaf", 2, "seg")]
    assert pg.spec.sub_groups[0].topology_constraint.required_topology_level == "rack"
    assert to_podgroup(meta()).spec.topology_constraint is None


def test_podgroup_body_omits_zero_min_members():
    body = podgroup_body(meta(min_available=1, subgroups=[SubGroupMetadata("p", 0), SubGroupMetadata("c", 1, "p")]))
    assert body["apiVersion"] == "scheduling.run.ai/v2alpha2" and body["kind"] == "PodGroup"
    assert "uid" not in body["metadata"] and "creationTimestamp" not in body["metadata"]
    assert body["spec"]["minMember"] == 1
    assert body["spec"]["subGroups"] == [{"name": "p"}, {"name": "c", "minMember": 1, "parent": "p"}]
    assert "subGroups" not in podgroup_body(meta())["spec"]


def test_subgroup_of():
    m = meta(subgroups=[SubGroupMetadata("a", 1, pods=["x"]), SubGroupMetadata("b", 1, pods=["x", "y"])])
    assert subgroup_of(m, "ns", "x") == "a"
    assert subgroup_of(m, "ns", "y") == "b"
    assert subgroup_of(m, "ns", "z") == ""
    assert subgroup_of(m, "other", "x") == ""
