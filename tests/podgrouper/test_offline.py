"""Grouping a fixed set of pods (``kai simulate``): annotations, SubGroup labels, KAI's
update rules for existing PodGroups, errors."""
from __future__ import annotations

import msgspec

from grouper_cases import obj, owned_by, pod
from kai.api.k8s import ObjectMeta, PodGroup, PodGroupSpec
from kai.podgrouper.offline import group_pods

WI = "leaderworkerset.sigs.k8s.io/worker-index"


def objects(*objs):
    return {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}


def test_pods_get_their_podgroup_and_subgroup():
    lws = obj("LeaderWorkerSet", "llm", "l-u", "leaderworkerset.x-k8s.io/v1",
              spec={"leaderWorkerTemplate": {"size": 3}})
    pods = [owned_by(lws, f"llm-0-{i}", f"u{i}", labels={WI: str(i), "leaderworkerset.sigs.k8s.io/group-index": "0"})
            for i in range(3)]
    out = group_pods(pods, objects(lws))
    assert not out.errors
    assert list(out.podgroups) == ["test_namespace/pg-llm-l-u-group-0"]
    assert [p.metadata.annotations["pod-group-name"] for p in out.pods] == ["pg-llm-l-u-group-0"] * 3
    assert [p.metadata.labels["kai.scheduler/subgroup-name"] for p in out.pods] == ["leader", "workers", "workers"]
    assert out.members["test_namespace/pg-llm-l-u-group-0"] == {"leader": ["llm-0-0"], "workers": ["llm-0-1", "llm-0-2"]}


def test_other_schedulers_and_orphans_naming_their_podgroup_are_left_alone():
    mine = pod("named", "n", annotations={"pod-group-name": "hand-made"})
    other = pod("other", "o", scheduler="default-scheduler")
    out = group_pods([mine, other], {})
    assert out.pods == [mine, other] and not out.podgroups and not out.errors


def test_owned_pods_are_regrouped_even_when_annotated():
    job = obj("Job", "j", "j-u", "batch/v1", spec={})
    p = owned_by(job, "j-abc", "p", annotations={"pod-group-name": "something-else"})
    out = group_pods([p], objects(job))
    assert out.pods[0].metadata.annotations["pod-group-name"] == "pg-j-abc-j-u"


def test_existing_podgroup_keeps_queue_and_backoff():
    job = obj("Job", "j", "j-u", "batch/v1", spec={}, labels={"kai.scheduler/queue": "new-q"},
              annotations={"kai.scheduler/batch-min-member": "2"})
    old = PodGroup(metadata=ObjectMeta(name="pg-j-j-u", namespace="test_namespace", uid="old-uid",
                                       labels={"kai.scheduler/node-pool": "pool-a", "keep": "me"}),
                   spec=PodGroupSpec(min_member=1, queue="old-q", scheduling_backoff=1, mark_unschedulable=True))
    out = group_pods([owned_by(job, "j-0", "p0")], objects(job), [old])
    pg = out.podgroups["test_namespace/pg-j-j-u"]
    assert (pg.spec.queue, pg.spec.scheduling_backoff, pg.spec.mark_unschedulable) == ("old-q", 1, True)
    assert pg.spec.min_member == 2 and pg.metadata.uid == "old-uid"
    assert pg.metadata.labels == {"kai.scheduler/node-pool": "pool-a", "keep": "me", "kai.scheduler/queue": "new-q"}


def test_node_pool_label_copied_from_the_pod():
    job = obj("Job", "j", "j-u", "batch/v1", spec={})
    out = group_pods([owned_by(job, "j-0", "p0", labels={"kai.scheduler/node-pool": "pool-b"})], objects(job))
    assert out.podgroups["test_namespace/pg-j-0-j-u"].metadata.labels["kai.scheduler/node-pool"] == "pool-b"


def test_errors_leave_the_pod_ungrouped():
    p = pod("lost", "l", owner={"apiVersion": "batch/v1", "kind": "Job", "name": "gone", "uid": "g"})
    out = group_pods([p], {})
    assert "Job test_namespace/gone" in out.errors["test_namespace/lost"]
    assert "pod-group-name" not in out.pods[0].metadata.annotations
    assert msgspec.to_builtins(out.pods[0]) == msgspec.to_builtins(p)
