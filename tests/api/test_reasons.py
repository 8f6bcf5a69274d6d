"""Unschedulable reasons -> causes: the leading term, without counts and names."""
from __future__ import annotations

import pytest

from kai.api.reasons import cause, group_by_cause

CASES = [
    ("gang of 3 pods: only 0 could be placed; pod team-a/too-big-0: 0/6 nodes fit: 5 node(s) didn't match "
     "the pod's node selector/affinity, 1 untolerated taint dedicated=infer",
     "node(s) didn't match the pod's node selector/affinity"),
    ("pod t/w-0: 0/12 nodes fit: 12 insufficient nvidia.com/gpu", "insufficient nvidia.com/gpu"),
    ("pod t/f-0: 0/4 nodes fit a 0.5 GPU fraction: 4 insufficient gpu memory", "insufficient gpu memory"),
    ("0/1 nodes fit: 1 untolerated taint dedicated=infer", "untolerated taint dedicated=infer"),
    ("pod t/w-0: 0/3 nodes fit", "no node fits"),
    ("0/0 nodes fit: the cluster has no nodes", "the cluster has no nodes"),
    ("OverLimit: queue 'a' would use 5 gpu, above its limit 4", "OverLimit"),
    ("NonPreemptibleOverQuota: non-preemptible job would bring queue 'a' to 3 gpu, above its quota 2",
     "NonPreemptibleOverQuota"),
    ("QueueDoesNotExist: queue 'x' does not exist", "QueueDoesNotExist"),
    ("queue 'p' is not a leaf queue; only leaf queues take jobs", "queue is not a leaf"),
    ("the PodGroup has 1 schedulable pod(s), fewer than its minMember 2 (pods not created yet or "
     "scheduling-gated)", "gang below minMember (pods missing or gated)"),
    ("pod t/p requests a GPU fraction but GPU sharing is not enabled", "GPU sharing not enabled"),
    ("topology 'rack' requested by the job does not exist", "topology"),
    ("none of 2 candidate node sets could place the job: rack-a: 0/4 nodes fit: 4 insufficient cpu",
     "insufficient cpu"),
    ("", "unknown"),
    ("something new with 42 parts: detail", "something new with N parts"),
]


@pytest.mark.parametrize("reason,expected", CASES)
def test_cause(reason, expected):
    assert cause(reason) == expected


def test_group_by_cause_largest_first():
    groups = group_by_cause([("t/a", ["pod t/a-0: 0/2 nodes fit: 2 insufficient nvidia.com/gpu"]),
                             ("t/b", ["OverLimit: queue 'q' would use 9 gpu, above its limit 8"]),
                             ("t/c", ["gang of 2 pods: only 1 could be placed; pod t/c-1: 0/2 nodes fit: "
                                      "2 insufficient nvidia.com/gpu"]),
                             ("t/d", [])])
    assert groups == [{"cause": "insufficient nvidia.com/gpu", "count": 2, "jobs": ["t/a", "t/c"]},
                      {"cause": "OverLimit", "count": 1, "jobs": ["t/b"]},
                      {"cause": "unknown", "count": 1, "jobs": ["t/d"]}]
