"""Knative grouper: a gang per Revision, or per pod for revisions that started that way
(cases from KAI's knative_test.go)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, pod, ref
from kai.podgrouper.defaults import GrouperConfig
from kai.podgrouper.metadata import GroupingError

NS = "test_namespace"
SVC = obj("Service", "service", "svc-u", "serving.knative.dev/v1", ns=NS)
REV_LABEL = "serving.knative.dev/revision"


def revision(min_scale=None, labels=None):
    ann = {"autoscaling.knative.dev/min-scale": min_scale} if min_scale is not None else {}
    return obj("Revision", "revision", "revUID", "serving.knative.dev/v1", ns=NS, annotations=ann, labels=labels)


def kpod(name, uid, pg=None, labels=None):
    return pod(name, uid, owner=ref("Service", "service", "svc-u", "serving.knative.dev/v1"),
               labels={REV_LABEL: "revision", **(labels or {})},
               annotations={"pod-group-name": pg} if pg else {})


def pg(name, owner_kind):
    return {"metadata": {"name": name, "namespace": NS,
                         "ownerReferences": [{"apiVersion": "v1", "kind": owner_kind, "name": "x", "uid": "x"}]}}


@pytest.mark.parametrize("gang,min_scale,others,podgroups,name,minimum", [
    (True, None, [], [], "pg-revision-revUID", 1),
    (False, None, [], [], "pg-pod-podUID", 1),
    # pods already in per-pod PodGroups (from before gang scheduling): stay per pod
    (True, None, [kpod("old-1", "o1", "pg-old-1-o1"), kpod("old-2", "o2", "pg-old-2-o2")], [], "pg-pod-podUID", 1),
    # pods already sharing one PodGroup: the gang
    (True, None, [kpod("old-1", "o1", "pg-revision-revUID"), kpod("old-2", "o2", "pg-revision-revUID")], [],
     "pg-revision-revUID", 1),
    (True, "3", [], [], "pg-revision-revUID", 3),
    (True, "three", [], [], "pg-revision-revUID", 1),
    (True, "3", [kpod("old-1", "o1", "pg-old-1-o1")], [], "pg-revision-revUID", 3),            # its PodGroup is gone
    (True, "3", [kpod("old-1", "o1", "pg-old-1-o1")], [pg("pg-old-1-o1", "Pod")], "pg-pod-podUID", 1),
    (True, "3", [kpod("old-1", "o1", "pg-revision-revUID")], [pg("pg-revision-revUID", "Revision")],
     "pg-revision-revUID", 3),
])
def test_knative(gang, min_scale, others, podgroups, name, minimum):
    p = kpod("pod", "podUID")
    m = group(p, SVC, revision(min_scale), pods=others, podgroups=podgroups,
              config=GrouperConfig(knative_gang_schedule=gang))
    assert (m.name, m.min_available, m.priority_class_name) == (name, minimum, "inference")
    assert m.owner.kind == ("Revision" if name.startswith("pg-revision") else "Pod")


def test_priority_from_pod_or_revision_labels():
    p = kpod("pod", "podUID", labels={"priorityClassName": "very-high"})
    assert group(p, SVC, revision(), priority_classes=["very-high"]).priority_class_name == "very-high"
    rev = revision(labels={"priorityClassName": "high"})
    assert group(kpod("pod", "podUID"), SVC, rev, priority_classes=["high"]).priority_class_name == "high"


def test_errors():
    with pytest.raises(GroupingError, match="revisionName not found"):
        group(pod("p", "u", owner=ref("Service", "service", "svc-u", "serving.knative.dev/v1")), SVC)
    with pytest.raises(GroupingError, match="not found"):
        group(kpod("pod", "podUID"), SVC)
    with pytest.raises(GroupingError, match="unexpected owner reference"):
        group(kpod("pod", "podUID"), SVC, revision(), pods=[kpod("old-1", "o1", "pg-x")], podgroups=[pg("pg-x", "Job")])
