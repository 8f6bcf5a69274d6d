"""LeaderWorkerSet grouper: leader/workers SubGroups and segments (cases from KAI's
lws_grouper_test.go)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, pod, ref, shape, sub
from kai.podgrouper.metadata import GroupingError

WI, GI = "leaderworkerset.sigs.k8s.io/worker-index", "leaderworkerset.sigs.k8s.io/group-index"
TOPO = {"kai.scheduler/topology": "rack"}


def lws(name, policy, size, segment=None, policy_type=None, worker_annotations=None, annotations=None):
    lwt = {"workerTemplate": {"metadata": {}}, "size": size}
    if segment is not None:
        lwt["subGroupPolicy"] = {"subGroupSize": segment}
        if policy_type:
            lwt["subGroupPolicy"]["subGroupPolicyType"] = policy_type
    if worker_annotations:
        lwt["workerTemplate"]["metadata"]["annotations"] = worker_annotations
    spec = {"leaderWorkerTemplate": lwt}
    if policy is not None:
        spec["startupPolicy"] = policy
    return obj("LeaderWorkerSet", name, f"{name}-uid", "leaderworkerset.x-k8s.io/v1", spec=spec, ns="default",
               annotations=annotations)


def member(o, name, worker=None, group_index=None, node="", size_annotation=None):
    labels = {}
    if worker is not None:
        labels[WI] = str(worker)
    if group_index is not None:
        labels[GI] = str(group_index)
    ann = {"leaderworkerset.sigs.k8s.io/size": size_annotation} if size_annotation else {}
    m = o["metadata"]
    return pod(name, f"uid-{name}", owner=ref("LeaderWorkerSet", m["name"], m["uid"], o["apiVersion"]),
               labels=labels, annotations=ann, node=node, ns="default")


def test_leader_created():
    o = lws("lws-test", "LeaderCreated", 3)
    m = group(member(o, "lws-test-0-1"), o)
    assert m.min_available == 3
    assert (m.owner.kind, m.owner.api_version, m.owner.name, m.owner.uid) == \
        ("LeaderWorkerSet", "leaderworkerset.x-k8s.io/v1", "lws-test", "lws-test-uid")
    assert shape(m) == [("leader", 1, None, ()), ("workers", 2, None, ("lws-test-0-1",))]


def test_leader_ready():
    o = lws("lws-ready", "LeaderReady", 5)
    m = group(member(o, "lws-ready-0-0", worker=0), o)                    # leader not yet bound
    assert m.min_available == 1
    assert shape(m) == [("leader", 1, None, ("lws-ready-0-0",))]
    m = group(member(o, "lws-ready-0-2", worker=2, group_index=0, node="worker-node", size_annotation="5"), o)
    assert m.min_available == 5
    assert sub(m, "workers").min_available == 4 and sub(m, "workers").pods == ["lws-ready-0-2"]
    m = group(member(o, "lws-ready-0-0", worker=0, node="n1"), o)           # leader bound: the whole group
    assert m.min_available == 5


def test_group_index_names_the_podgroup():
    o = lws("lws-grouped", "LeaderCreated", 2)
    assert group(member(o, "p", group_index=1), o).name == "pg-lws-grouped-lws-grouped-uid-group-1"
    assert group(member(o, "p"), o).name == "pg-lws-grouped-lws-grouped-uid"
    assert group(member(o, "p", group_index="x"), o).name == "pg-lws-grouped-lws-grouped-uid"


def test_subgroups_leader_and_worker_pods():
    o = lws("lws-subgroups", "LeaderCreated", 3)
    assert shape(group(member(o, "lws-subgroups-0-0", worker=0), o)) == [
        ("leader", 1, None, ("lws-subgroups-0-0",)), ("workers", 2, None, ())]
    assert shape(group(member(o, "lws-subgroups-0-1", worker=1), o)) == [
        ("leader", 1, None, ()), ("workers", 2, None, ("lws-subgroups-0-1",))]
    single = lws("lws-single", "LeaderCreated", 1)
    assert shape(group(member(single, "lws-single-0-0", worker=0), single)) == [
        ("leader", 1, None, ("lws-single-0-0",))]
    # no startup policy: LeaderCreated
    assert group(member(lws("x", None, 4), "p", worker=1), lws("x", None, 4)).min_available == 4


@pytest.mark.parametrize("size,segment,policy_type,worker,expected", [
    # divisible ((5-1) % 2 == 0): segment-0 holds the leader and 2 workers
    (5, 2, None, 0, [("segment-0", 3, None, ()), ("segment-1", 2, None, ()),
                     ("leader", 1, "segment-0", ("p",)), ("workers", 2, "segment-0", ())]),
    (5, 2, None, 1, [("segment-0", 3, None, ()), ("segment-1", 2, None, ()),
                     ("leader", 1, "segment-0", ()), ("workers", 2, "segment-0", ("p",))]),
    (5, 2, None, 3, [("segment-0", 3, None, ()), ("segment-1", 2, None, ("p",)),
                     ("leader", 1, "segment-0", ()), ("workers", 2, "segment-0", ())]),
    # not divisible ((4-1) % 2 == 1): segment-0 = {leader, w1}
    (4, 2, None, 0, [("segment-0", 2, None, ()), ("segment-1", 2, None, ()),
                     ("leader", 1, "segment-0", ("p",)), ("workers", 1, "segment-0", ())]),
    # LeaderExcluded: the leader on its own
    (5, 2, "LeaderExcluded", 1, [("leader", 1, None, ()), ("segment-0", 2, None, ("p",)),
                                 ("segment-1", 2, None, ())]),
    (5, 2, "LeaderExcluded", 3, [("leader", 1, None, ()), ("segment-0", 2, None, ()),
                                 ("segment-1", 2, None, ("p",))]),
    (5, 2, "LeaderExcluded", 0, [("leader", 1, None, ("p",)), ("segment-0", 2, None, ()),
                                 ("segment-1", 2, None, ())]),
    # the last segment may be smaller: 5 pods, segments of 3 -> {leader, w1, w2}, {w3, w4}
    (5, 3, None, 1, [("segment-0", 3, None, ()), ("segment-1", 2, None, ()),
                     ("leader", 1, "segment-0", ()), ("workers", 2, "segment-0", ("p",))]),
])
def test_segments(size, segment, policy_type, worker, expected):
    o = lws("lws-seg", "LeaderCreated", size, segment, policy_type)
    m = group(member(o, "p", worker=worker), o)
    assert shape(m) == expected
    assert all(s.topology is None for s in m.subgroups)


def test_segment_topology_and_size_sources():
    topo = {"kai.scheduler/segment-topology-required-placement": "rack-unit",
            "kai.scheduler/segment-topology-preferred-placement": "node", **TOPO}
    o = lws("lws-seg", "LeaderCreated", 5, 2, "LeaderExcluded", worker_annotations=topo)
    m = group(member(o, "p", worker=1), o)
    for name in ("segment-0", "segment-1"):
        t = sub(m, name).topology
        assert (t.topology, t.required, t.preferred) == ("rack", "rack-unit", "node")
    assert sub(m, "leader").topology is None
    # segment size from the worker template's annotation, topology name from the LWS
    o = lws("lws-seg", "LeaderCreated", 5, annotations=TOPO,
            worker_annotations={"kai.scheduler/segment-size": "2",
                                "kai.scheduler/segment-topology-required-placement": "rack-unit"})
    m = group(member(o, "p", worker=1), o)
    assert [s.name for s in m.subgroups] == ["segment-0", "segment-1", "leader", "workers"]
    assert sub(m, "segment-1").topology.topology == "rack" and sub(m, "workers").topology is None
    # segment size from the LWS annotation; only the preferred level set
    o = lws("lws-seg", "LeaderCreated", 5, annotations={"kai.scheduler/segment-size": "3", **TOPO},
            worker_annotations={"kai.scheduler/segment-topology-preferred-placement": "node"})
    t = sub(group(member(o, "p", worker=1), o), "segment-0").topology
    assert (t.topology, t.required, t.preferred) == ("rack", "", "node")


@pytest.mark.parametrize("o,pod_worker,match", [
    (lws("l", "LeaderCreated", 5, 1), 1, "must be greater than 1"),
    (lws("l", "LeaderCreated", 3, 4), 1, "greater than replicasSize"),
    (lws("l", "LeaderCreated", 4, 2, "LeaderExcluded"), 1, "not divisible"),
    (lws("l", "LeaderCreated", 5, 2), None, "worker index"),
    (lws("l", "Bogus", 3), 1, "unknown startupPolicy"),
    (lws("l", None, 0), 1, "invalid leaderWorkerTemplate.size"),
    (lws("l", None, 3, annotations={"kai.scheduler/segment-size": "two"}), 1, "invalid segment size"),
])
def test_errors(o, pod_worker, match):
    with pytest.raises(GroupingError, match=match):
        group(member(o, "p", worker=pod_worker), o)


def test_leader_ready_leader_with_segments_is_grouped():
    """Deviation from KAI (which fails here and never starts the group): a LeaderReady leader
    waiting alone is grouped without segments."""
    o = lws("l", "LeaderReady", 5, 2)
    m = group(member(o, "p", worker=0), o)
    assert m.min_available == 1 and shape(m) == [("leader", 1, None, ("p",))]


def test_single_segment_counts_the_leader_once():
    """Deviation from KAI, which asks 4 pods of a 3-pod group here (the leader counted twice)."""
    o = lws("l", "LeaderCreated", 3, 2)
    m = group(member(o, "p", worker=1), o)
    assert shape(m) == [("segment-0", 3, None, ()), ("leader", 1, "segment-0", ()), ("workers", 2, "segment-0", ("p",))]
