"""Grove grouper: the PodGang's podgroups as SubGroups, topology group configs as parents
(cases from KAI's grove_grouper_test.go)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, pod, ref, shape, sub
from kai.podgrouper.metadata import GroupingError

NS = "test-ns"


def podgroup(name, minimum, pods, pack=None):
    g = {"name": name, "minReplicas": minimum, "podReferences": [{"namespace": NS, "name": p} for p in pods]}
    if pack is not None:
        g["topologyConstraint"] = {"packConstraint": pack}
    return g


def podgang(groups, annotations=None, configs=None, pack=None, **spec):
    s = {"podgroups": groups, **spec}
    if configs is not None:
        s["topologyConstraintGroupConfigs"] = configs
    if pack is not None:
        s["topologyConstraint"] = {"packConstraint": pack}
    return obj("PodGang", "pgs1", "1", "scheduler.grove.io/v1alpha1", spec=s, ns=NS,
               labels={"test_label": "test_value"}, annotations=annotations or {"test_annotation": "test_value"})


PCS = obj("PodCliqueSet", "pcs", "pcs-u", "grove.io/v1alpha1", ns=NS, labels={"from-top": "yes"},
          annotations={"top-annotation": "yes"})


def member(name, labels=None):
    return pod(name, f"uid-{name}", owner=ref("PodCliqueSet", "pcs", "pcs-u", "grove.io/v1alpha1"), ns=NS,
               labels={"grove.io/podgang": "pgs1", **(labels or {})})


def test_podgang_subgroups_priority_queue():
    gang = podgang([podgroup("pgs1-pga", 4, ["pgs1-pga1", "pgs1-pga2", "pgs1-pga3", "pgs1-pga4"]),
                    podgroup("pgs1-pgb", 3, ["pgs1-pgb1", "pgs1-pgb2", "pgs1-pgb3"]),
                    podgroup("pgs1-pgc", 5, [f"pgs1-pgc{i}" for i in range(1, 6)])], priorityClassName="inference")
    m = group(member("pgs1-pga1", {"kai.scheduler/queue": "test_queue"}), PCS, gang)
    assert m.min_available == 12
    assert [(s.name, s.min_available) for s in m.subgroups] == [("pgs1-pga", 4), ("pgs1-pgb", 3), ("pgs1-pgc", 5)]
    assert (m.priority_class_name, m.queue) == ("inference", "test_queue")
    assert (m.name, m.owner.kind, m.owner.name) == ("pg-pgs1-1", "PodGang", "pgs1")
    # the top owner's labels and annotations are added where the PodGang has none
    assert m.labels["from-top"] == "yes" and m.labels["test_label"] == "test_value"
    assert m.annotations["top-annotation"] == "yes"
    assert sub(m, "pgs1-pgb").pods == ["pgs1-pgb1", "pgs1-pgb2", "pgs1-pgb3"]


def test_topology_hierarchy():
    gang = podgang([podgroup("pg1", 2, ["pod1"], {"preferred": "node", "required": ""}),
                    podgroup("pg2", 3, ["pod2"], {"preferred": "", "required": "node"})],
                   annotations={"grove.io/topology-name": "test-topology"},
                   configs=[{"name": "group1", "podGroupNames": ["pg1", "pg2"],
                             "topologyConstraint": {"packConstraint": {"preferred": "node", "required": "rack"}}}],
                   pack={"preferred": "rack", "required": "zone"})
    m = group(member("pod1"), PCS, gang)
    assert (m.topology.topology, m.topology.required, m.topology.preferred) == ("test-topology", "zone", "rack")
    assert shape(m) == [("group1", 0, None, ()), ("pg1", 2, "group1", ("pod1",)), ("pg2", 3, "group1", ("pod2",))]
    tops = [(s.topology.topology, s.topology.required, s.topology.preferred) for s in m.subgroups]
    assert tops == [("test-topology", "rack", "node"), ("test-topology", "", "node"), ("test-topology", "node", "")]
    assert m.min_available == 5


def test_topology_name_precedence_and_annotation_fallback():
    gang = podgang([podgroup("pg1", 1, ["pod1"])], pack={"preferred": "rack", "required": "zone"},
                   annotations={"grove.io/topology-name": "spec-topology", "kai.scheduler/topology": "anno-topology",
                                "kai.scheduler/topology-preferred-placement": "datacenter",
                                "kai.scheduler/topology-required-placement": "cluster"})
    t = group(member("pod1"), PCS, gang).topology
    assert (t.topology, t.required, t.preferred) == ("spec-topology", "zone", "rack")
    gang = podgang([podgroup("pg1", 1, ["pod1"])],
                   annotations={"kai.scheduler/topology": "anno-topology",
                                "kai.scheduler/topology-required-placement": "cluster"})
    t = group(member("pod1"), PCS, gang).topology
    assert (t.topology, t.required, t.preferred) == ("anno-topology", "cluster", "")


def test_configs_without_members_are_dropped_and_labels_override():
    gang = podgang([podgroup("pg1", 1, ["pod1"])], configs=[{"name": "empty", "podGroupNames": []}],
                   priorityClassName="inference")
    top = obj("PodCliqueSet", "pcs", "pcs-u", "grove.io/v1alpha1", ns=NS,
              labels={"priorityClassName": "train", "kai.scheduler/preemptibility": "non-preemptible"})
    m = group(member("pod1"), top, gang)
    assert [s.name for s in m.subgroups] == ["pg1"]
    assert (m.priority_class_name, m.preemptibility) == ("train", "non-preemptible")


@pytest.mark.parametrize("groups,extra,match", [
    ({"x": "1"}, {}, "failed to get spec.podgroups from PodGang test-ns/pgs1"),
    ([{"minReplicas": 1, "podReferences": []}], {}, "missing required 'name'"),
    ([{"name": "a", "podReferences": []}], {}, "missing required 'minReplicas'"),
    ([{"name": "a", "minReplicas": -1, "podReferences": []}], {}, "Must be greater than 0"),
    ([{"name": "a", "minReplicas": 1}], {}, "missing required 'podReferences'"),
    ([{"name": "a", "minReplicas": 1, "podReferences": [{"name": "p"}]}], {}, "podReferences"),
    ([{"name": "a", "minReplicas": 1, "podReferences": [{"namespace": "other", "name": "p"}]}], {},
     "cross-namespace pod reference not allowed"),
    ([podgroup("pg1", 1, ["pod1"])], {"pack": {"required": "zone"}}, "topology name cannot be empty"),
    ([podgroup("pg1", 1, ["pod1"])], {"configs": "bad"}, "topologyConstraintGroupConfigs"),
])
def test_errors(groups, extra, match):
    gang = podgang(groups, **extra)
    with pytest.raises(GroupingError, match=match):
        group(member("pod1"), PCS, gang)
    with pytest.raises(GroupingError, match="label for podgang name"):
        group(pod("x", "u", owner=ref("PodCliqueSet", "pcs", "pcs-u", "grove.io/v1alpha1"), ns=NS), PCS, gang)
