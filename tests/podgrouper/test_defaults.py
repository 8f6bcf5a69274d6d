"""KAI's default grouper: name, owner, labels/annotations, queue, priority, preemptibility,
topology and the per-kind defaults ConfigMap (cases from KAI's default_grouper_test.go and
default_grouper_owners_test.go)."""
from __future__ import annotations

import json

import pytest

from grouper_cases import NS, group, obj, owned_by, pod, ref
from kai.podgrouper.defaults import GrouperConfig, parse_defaults, top_owner_metadata
from kai.podgrouper.objects import Obj

QUEUE = "kai.scheduler/queue"
POOL = "kai.scheduler/node-pool"
CM_NS, CM_NAME = "kai-scheduler", "default-priorities"
WITH_CM = GrouperConfig(defaults_configmap_name=CM_NAME, defaults_configmap_namespace=CM_NS)


def owner(kind="TestKind", api="test_group/v1", labels=None, annotations=None):
    return obj(kind, "test_name", "1", api, labels=labels, annotations=annotations)


def defaults_cm(entries):
    return obj("ConfigMap", CM_NAME, "cm-u", "v1", ns=CM_NS, data={"types": json.dumps(entries)})


def test_fields_from_the_top_owner():
    o = owner(labels={"test_label": "test_value"}, annotations={"test_annotation": "test_value"})
    m = group(owned_by(o), o)
    assert m.name == "pg-test_name-1"
    assert (m.owner.kind, m.owner.api_version, m.owner.name, m.owner.uid) == ("TestKind", "test_group/v1",
                                                                             "test_name", "1")
    assert m.namespace == NS
    assert m.labels == {"test_label": "test_value"}
    assert m.annotations == {"test_annotation": "test_value",
                             "kai.scheduler/top-owner-metadata":
                                 "name: test_name\nuid: \"1\"\ngroup: test_group\nversion: v1\nkind: TestKind\n"}
    assert (m.queue, m.priority_class_name, m.preemptibility, m.min_available) == ("default-queue", "train", "", 1)


def test_top_owner_metadata_yaml_as_kai_marshals_it():
    # topowner/metadata_test.go
    o = Obj(obj("hantar", "bla", "1", "scheduling.run.ai/v2alpha2"))
    assert top_owner_metadata(o) == "name: bla\nuid: \"1\"\ngroup: scheduling.run.ai\nversion: v2alpha2\nkind: hantar\n"
    bare = Obj({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod-job"}})
    assert top_owner_metadata(bare) == "name: pod-job\nuid: \"\"\ngroup: \"\"\nversion: v1\nkind: Pod\n"


def test_user_label_and_annotation_come_from_the_pod_unless_the_owner_has_them():
    o = owner(labels={"user": "owner-user"})
    m = group(owned_by(o, labels={"user": "pod-user"}, annotations={"user": "pod-user"}), o)
    assert m.labels["user"] == "owner-user"
    assert m.annotations["user"] == "pod-user"
    o2 = owner()
    assert group(owned_by(o2, labels={"user": "pod-user"}), o2).labels["user"] == "pod-user"


@pytest.mark.parametrize("owner_labels,pod_labels,expected", [
    ({QUEUE: "qo"}, {QUEUE: "qp"}, "qo"),
    ({}, {QUEUE: "qp"}, "qp"),
    ({"project": "my-proj"}, {}, "my-proj"),
    ({"project": "my-proj"}, {POOL: "np-1"}, "my-proj-np-1"),
    ({}, {"project": "pod-proj", POOL: "np-1"}, "pod-proj-np-1"),
    ({QUEUE: "q", "project": "p"}, {}, "q"),
    ({}, {}, "default-queue"),
])
def test_queue(owner_labels, pod_labels, expected):
    o = owner(labels=owner_labels)
    assert group(owned_by(o, labels=pod_labels), o).queue == expected


def test_queue_label_key_is_configurable():
    o = owner(labels={"runai/queue": "team-a", QUEUE: "ignored"})
    cfg = GrouperConfig(queue_label_key="runai/queue")
    assert group(owned_by(o), o, config=cfg).queue == "team-a"
    o2 = owner(labels={QUEUE: "not-the-key"})
    assert group(owned_by(o2), o2, config=cfg).queue == "default-queue"


@pytest.mark.parametrize("owner_labels,pod_labels,spec_pc,expected", [
    ({"priorityClassName": "my-priority"}, {}, "", "my-priority"),
    ({}, {"priorityClassName": "my-priority"}, "", "my-priority"),
    ({}, {}, "my-priority", "my-priority"),
    # a name that is not a PriorityClass is skipped: the next source, else the fallback
    ({"priorityClassName": "no-such-class"}, {}, "", "train"),
    ({"priorityClassName": "build"}, {"priorityClassName": "inference"}, "my-priority", "build"),
])
def test_priority_class(owner_labels, pod_labels, spec_pc, expected):
    o = owner(labels=owner_labels)
    p = owned_by(o, labels=pod_labels, priority_class=spec_pc)
    assert group(p, o, priority_classes=["my-priority"]).priority_class_name == expected


@pytest.mark.parametrize("owner_value,pod_value,expected", [
    ("preemptible", None, "preemptible"),
    ("non-preemptible", None, "non-preemptible"),
    (None, "preemptible", "preemptible"),
    (None, "non-preemptible", "non-preemptible"),
    ("invalid", None, ""),
    (None, "invalid", ""),
    (None, None, ""),
    ("non-preemptible", "preemptible", "non-preemptible"),
    ("invalid", "preemptible", "preemptible"),
])
def test_preemptibility(owner_value, pod_value, expected):
    key = "kai.scheduler/preemptibility"
    o = owner(labels={key: owner_value} if owner_value else {})
    p = owned_by(o, labels={key: pod_value} if pod_value else {})
    assert group(p, o).preemptibility == expected


CM_ENTRIES = [{"typeName": "TestKind", "group": "apps", "priorityName": "cm-prio-apps", "preemptibility": "preemptible"},
              {"typeName": "TestKind", "priorityName": "cm-prio-kind", "preemptibility": "non-preemptible"}]


@pytest.mark.parametrize("api,owner_labels,pod_labels,spec_pc,want_pc,want_pre", [
    ("apps/v1", {}, {}, "", "cm-prio-apps", "preemptible"),                    # by Kind.group
    ("batch/v1", {}, {}, "", "cm-prio-kind", "non-preemptible"),                # by Kind alone
    ("batch/v1", {"kai.scheduler/preemptibility": "preemptible"}, {}, "", "cm-prio-kind", "preemptible"),
    ("batch/v1", {}, {"kai.scheduler/preemptibility": "preemptible"}, "", "cm-prio-kind", "preemptible"),
    ("batch/v1", {"priorityClassName": "my-priority"}, {}, "", "my-priority", "non-preemptible"),
    ("batch/v1", {}, {"priorityClassName": "my-priority"}, "", "my-priority", "non-preemptible"),
    ("batch/v1", {}, {}, "my-priority", "my-priority", "non-preemptible"),
])
def test_defaults_configmap(api, owner_labels, pod_labels, spec_pc, want_pc, want_pre):
    o = owner(api=api, labels=owner_labels)
    p = owned_by(o, labels=pod_labels, priority_class=spec_pc)
    m = group(p, o, defaults_cm(CM_ENTRIES), config=WITH_CM,
              priority_classes=["cm-prio-apps", "cm-prio-kind", "my-priority"])
    assert (m.priority_class_name, m.preemptibility) == (want_pc, want_pre)


def test_defaults_configmap_edge_cases():
    o = owner(api="apps/v1")
    # the default names a class that does not exist: fallback train
    cm = defaults_cm([{"typeName": "TestKind", "group": "apps", "priorityName": "missing"}])
    assert group(owned_by(o), o, cm, config=WITH_CM).priority_class_name == "train"
    # an invalid preemptibility in the defaults is ignored
    cm = defaults_cm([{"typeName": "TestKind", "group": "apps", "priorityName": "train", "preemptibility": "INVALID"}])
    assert group(owned_by(o), o, cm, config=WITH_CM).preemptibility == ""
    # preemptibility values are case-insensitive
    cm = defaults_cm([{"typeName": "TestKind", "group": "apps", "preemptibility": "Non-Preemptible"}])
    assert group(owned_by(o), o, cm, config=WITH_CM).preemptibility == "non-preemptible"
    # no ConfigMap, or no 'types' key, or bad JSON: built-in defaults, no error
    assert group(owned_by(o), o, config=WITH_CM).priority_class_name == "train"
    bad = obj("ConfigMap", CM_NAME, "cm-u", "v1", ns=CM_NS, data={"other": "[]"})
    assert group(owned_by(o), o, bad, config=WITH_CM).priority_class_name == "train"
    bad = obj("ConfigMap", CM_NAME, "cm-u", "v1", ns=CM_NS, data={"types": "{not json"})
    assert group(owned_by(o), o, bad, config=WITH_CM).priority_class_name == "train"
    # a valid label overrides an unusable default; a label naming no class falls to the default
    cm = defaults_cm([{"typeName": "TestKind", "group": "apps", "priorityName": "build"}])
    assert group(owned_by(o), o, cm, config=WITH_CM).priority_class_name == "build"
    o2 = owner(api="apps/v1", labels={"priorityClassName": "nope"})
    assert group(owned_by(o2), o2, cm, config=WITH_CM).priority_class_name == "build"


def test_parse_defaults():
    cm = {"data": {"types": json.dumps([{"typeName": "Job", "group": "batch", "priorityName": "x"},
                                        {"typeName": "Pod", "priorityName": "y"}])}}
    assert set(parse_defaults(cm)) == {"Job.batch", "Pod"}
    for bad in ({}, {"data": {}}, {"data": {"x": "[]"}}, {"data": {"types": "{"}}, {"data": {"types": "{}"}}):
        with pytest.raises(ValueError):
            parse_defaults(bad)


def test_topology_from_the_top_owner_annotations():
    o = owner(annotations={"kai.scheduler/topology": "dc", "kai.scheduler/topology-required-placement": "zone",
                           "kai.scheduler/topology-preferred-placement": "rack"})
    t = group(owned_by(o), o).topology
    assert (t.topology, t.required, t.preferred) == ("dc", "zone", "rack")
    # the pod's own annotations only count for a bare pod (it is its own top owner)
    o2 = owner()
    p = owned_by(o2, annotations={"kai.scheduler/topology": "dc"})
    assert group(p, o2).topology.topology == ""
    bare = pod(annotations={"kai.scheduler/topology": "dc", "kai.scheduler/topology-required-placement": "rack"})
    assert group(bare).topology.required == "rack"


@pytest.mark.parametrize("kind,api", [("ScheduledWorkflow", "kubeflow.org/v1alpha1"), ("TaskRun", "tekton.dev/v1"),
                                      ("PipelineRun", "tekton.dev/v1"), ("SeldonDeployment", "machinelearning.seldon.io/v1"),
                                      ("VirtualMachineInstance", "kubevirt.io/v1"),
                                      ("DevWorkspace", "workspace.devfile.io/v1alpha2")])
def test_owners_with_the_default_rule(kind, api):
    # default_grouper_owners_test.go: Kubeflow pipelines, Tekton, Seldon, KubeVirt, DevWorkspace
    o = obj(kind, "test_name", "1", api, labels={"test_label": "test_value"})
    m = group(owned_by(o), o)
    assert (m.name, m.owner.kind, m.owner.api_version, m.queue, m.priority_class_name, m.min_available) == \
        ("pg-test_name-1", kind, api, "default-queue", "train", 1)


def test_unreadable_owner_ends_the_walk():
    """KAI: an owner the grouper may not read (403) makes the owner below it the top owner."""
    from kai.podgrouper.objects import Forbidden
    rs = obj("ReplicaSet", "rs", "rs-u", "apps/v1", owner=ref("Secretive", "s", "s-u", "x.io/v1"),
             labels={QUEUE: "rs-q"})

    class NoSecretive:
        def __init__(self, inner):
            self.inner = inner

        def get(self, api_version, kind, namespace, name):
            if kind == "Secretive":
                raise Forbidden("forbidden")
            return self.inner.get(api_version, kind, namespace, name)

        def list_pods(self, namespace, labels):
            return []

    from grouper_cases import reader
    from kai.podgrouper.hub import podgroup_metadata
    p = owned_by(rs)
    m = podgroup_metadata(p, NoSecretive(reader(rs, pods=[p])))
    assert (m.name, m.owner.kind, m.queue) == ("pg-rs-rs-u", "ReplicaSet", "rs-q")
    # refused at the first owner: the pod is its own top owner
    p2 = pod(owner=ref("Secretive", "s", "s-u", "x.io/v1"))
    m2 = podgroup_metadata(p2, NoSecretive(reader(pods=[p2])))
    assert (m2.name, m2.owner.kind) == ("pg-pod-0-pod-uid", "Pod")
