"""JobSet grouper (cases from KAI's jobset_grouper_test.go)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, pod, ref
from kai.podgrouper.metadata import GroupingError

RJ_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"


def rjob(name, replicas, parallelism=None, completions=None):
    spec = {}
    if parallelism is not None:
        spec["parallelism"] = parallelism
    if completions is not None:
        spec["completions"] = completions
    return {"name": name, "replicas": replicas, "template": {"spec": spec}}


def jobset(name, uid, rjobs, order=None, annotations=None, ns="default"):
    spec = {"replicatedJobs": rjobs}
    if order is not None:
        spec["startupPolicy"] = {"startupPolicyOrder": order}
    return obj("JobSet", name, uid, "jobset.x-k8s.io/v1alpha2", spec=spec, labels={"test-label": "test-value"},
               annotations=annotations, ns=ns)


def member(js, rj, name="pod", queue="test-queue"):
    """A pod as the JobSet controller creates it: owned by a child Job, labelled with its replicatedJob."""
    m = js["metadata"]
    child = obj("Job", f"{m['name']}-{rj}-0", f"job-{rj}", "batch/v1", ns=m["namespace"],
                owner=ref("JobSet", m["name"], m["uid"], "jobset.x-k8s.io/v1alpha2"))
    p = pod(name, f"uid-{name}", owner=ref("Job", child["metadata"]["name"], child["metadata"]["uid"], "batch/v1"),
            labels={RJ_LABEL: rj, "kai.scheduler/queue": queue}, ns=m["namespace"])
    return p, child


def meta(js, rj, **kw):
    p, child = member(js, rj, **kw)
    return group(p, js, child)


@pytest.mark.parametrize("rjobs,order,rj,name,minimum", [
    # no startup policy: InOrder, one PodGroup per replicatedJob
    ([rjob("worker", 2, 4)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 8),
    ([rjob("leader", 1, 1), rjob("worker", 3, 8)], None, "leader", "pg-my-jobset-jobset-uid-123-leader", 1),
    ([rjob("leader", 1, 1), rjob("worker", 3, 8)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 24),
    ([rjob("worker", 2)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 2),          # parallelism 1
    ([rjob("worker", 1, 0)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 1),       # <= 0 -> 1
    ([rjob("worker", 1, -1)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 1),
    ([], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 1),                          # none at all
    ([rjob("worker", 1, 4)], None, "nonexistent", "pg-my-jobset-jobset-uid-123-nonexistent", 1),
    ([rjob("worker", 2, 4, completions=3)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 6),
    ([rjob("worker", 3, 2, completions=5)], None, "worker", "pg-my-jobset-jobset-uid-123-worker", 6),
    ([rjob("leader", 1, 1), rjob("worker", 2, 4)], "InOrder", "worker", "pg-my-jobset-jobset-uid-123-worker", 8),
    # any other order: one PodGroup for the whole JobSet
    ([rjob("leader", 1, 1), rjob("worker", 2, 4)], "AnyOrder", "leader", "pg-my-jobset-jobset-uid-123", 9),
    ([rjob("leader", 1, 1), rjob("worker", 2, 4)], "AnyOrder", "worker", "pg-my-jobset-jobset-uid-123", 9),
    ([rjob("worker", 2, 4, completions=3)], "AnyOrder", "worker", "pg-my-jobset-jobset-uid-123", 6),
])
def test_jobset(rjobs, order, rj, name, minimum):
    js = jobset("my-jobset", "jobset-uid-123", rjobs, order)
    m = meta(js, rj)
    assert (m.name, m.min_available) == (name, minimum)
    assert (m.queue, m.owner.kind, m.owner.api_version, m.owner.name, m.owner.uid) == \
        ("test-queue", "JobSet", "jobset.x-k8s.io/v1alpha2", "my-jobset", "jobset-uid-123")


def test_jobset_pods_of_one_replicated_job_share_a_podgroup():
    js = jobset("unique", "uid-unique", [rjob("worker", 2, 4)])
    assert meta(js, "worker", name="pod-0").name == meta(js, "worker", name="pod-1").name == \
        "pg-unique-uid-unique-worker"


def test_jobset_errors():
    js = jobset("my-jobset", "uid", [rjob("worker", 1, 2)])
    p = pod("pod", "u", owner=ref("JobSet", "my-jobset", "uid", "jobset.x-k8s.io/v1alpha2"), ns="default")
    with pytest.raises(GroupingError, match=RJ_LABEL):
        group(p, js)


def test_jobset_batch_min_member_override():
    js = jobset("js", "uid", [rjob("worker", 1, 4)], annotations={"kai.scheduler/batch-min-member": "3"})
    assert meta(js, "worker").min_available == 3
