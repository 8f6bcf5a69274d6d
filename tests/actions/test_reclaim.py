"""reclaim: scenario tables through ``kai simulate`` (nodes, queues, jobs in; evictions out)."""
from __future__ import annotations

import pytest

from victim_scenarios import bound, evicted, evicted_by, job, node, pipelined, queue, run

A = "allocate, reclaim"

# (id, nodes, queues, jobs, expected evicted, expected pipelined)
CASES = [
    ("starved-queue-reclaims-one-pod",
     [node("n1", gpu=4)], [queue("q1", gpu_quota=2), queue("q2", gpu_quota=2)],
     [job("hog", "q2", pods=4, min_member=1, running=["n1"] * 4, created=1),
      job("want", "q1", pods=1, created=2)],
     ["hog-3"], ["want-0"]),
    ("gang-victim-evicted-whole",
     [node("n1", gpu=2), node("n2", gpu=2)], [queue("q1", gpu_quota=2), queue("q2", gpu_quota=2)],
     [job("g1", "q2", pods=2, running=["n1", "n1"], created=1),
      job("g2", "q2", pods=2, running=["n2", "n2"], created=2),
      job("want", "q1", pods=1, created=3)],
     ["g2-0", "g2-1"], ["want-0"]),
    ("non-preemptible-never-a-victim",
     [node("n1", gpu=2)], [queue("q1", gpu_quota=1), queue("q2", gpu_quota=1)],
     [job("inf", "q2", pods=2, priority_class="inference", running=["n1", "n1"], created=1),
      job("want", "q1", pods=1, created=2)],
     [], []),
    ("same-queue-is-not-a-reclaim-victim",
     [node("n1", gpu=2)], [queue("q1", gpu_quota=2), queue("q2", gpu_quota=0)],
     [job("mine", "q1", pods=1, running=["n1"], created=1),
      job("other", "q2", pods=1, running=["n1"], priority_class="inference", created=2),
      job("want", "q1", pods=1, priority_class="build-preemptible", created=3)],
     [], []),
    ("queue-at-its-share-cannot-reclaim",
     [node("n1", gpu=4)], [queue("q1", gpu_quota=2, weight=0), queue("q2", gpu_quota=2, weight=0)],
     [job("a", "q1", pods=2, running=["n1", "n1"], created=1),
      job("b", "q2", pods=2, running=["n1", "n1"], created=2),
      job("want", "q1", pods=1, created=3)],
     [], []),
    ("victim-queue-within-its-quota-is-kept",
     [node("n1", gpu=4)], [queue("q1", gpu_quota=2, weight=0), queue("q2", gpu_quota=2, weight=0),
                           queue("q3", gpu_quota=0, weight=0)],
     [job("b", "q2", pods=2, running=["n1", "n1"], created=1),
      job("c", "q3", pods=1, running=["n1"], priority_class="inference", created=2),
      job("want", "q1", pods=2, created=3)],
     [], []),
    # KAI places the reclaimer and its victims again in queue order: a victim queue of higher
    # priority, not over its fair share once the victim is out, takes its place back first
    ("victim-of-a-higher-priority-queue-is-placed-back-first",
     [node("n1", gpu=4)], [queue("q0", gpu_quota=1), queue("q1", gpu_quota=1),
                           queue("q2", gpu_quota=1, weight=0, priority=101)],
     [job("a", "q0", pods=1, running=["n1"], created=1), job("b", "q1", pods=1, running=["n1"], created=2),
      job("c", "q2", pods=1, running=["n1"], created=3), job("d", "q2", pods=1, running=["n1"], created=4),
      job("want", "q0", pods=1, created=5)],
     [], []),
    ("victim-of-an-equal-priority-queue-is-reclaimed",
     [node("n1", gpu=4)], [queue("q0", gpu_quota=1), queue("q1", gpu_quota=1),
                           queue("q2", gpu_quota=1, weight=0)],
     [job("a", "q0", pods=1, running=["n1"], created=1), job("b", "q1", pods=1, running=["n1"], created=2),
      job("c", "q2", pods=1, running=["n1"], created=3), job("d", "q2", pods=1, running=["n1"], created=4),
      job("want", "q0", pods=1, created=5)],
     ["d-0"], ["want-0"]),
    ("no-eviction-when-reclaimer-cannot-fit",
     [node("n1", gpu=2)], [queue("q1", gpu_quota=4), queue("q2", gpu_quota=0)],
     [job("hog", "q2", pods=2, min_member=1, running=["n1", "n1"], created=1),
      job("big", "q1", pods=1, gpu=4, created=2)],
     [], []),
]


@pytest.mark.parametrize("nodes,queues,jobs,want_evicted,want_pipelined",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reclaim_table(nodes, queues, jobs, want_evicted, want_pipelined):
    r = run(nodes, queues, jobs, actions=A)
    assert evicted(r) == sorted(want_evicted)
    assert pipelined(r) == sorted(want_pipelined)
    assert set(evicted_by(r).values()) <= {"reclaim"}


def test_reclaim_needs_a_can_reclaim_hook():
    r = run([node("n1", gpu=1)], [queue("q1", gpu_quota=1), queue("q2", gpu_quota=0)],
            [job("hog", "q2", running=["n1"], created=1), job("want", "q1", created=2)],
            actions=A, drop_plugins=("proportion",))
    assert evicted(r) == []


def test_elastic_victim_shrinks_and_converges():
    r = run([node("n1", gpu=4)], [queue("q1", gpu_quota=2), queue("q2", gpu_quota=2)],
            [job("hog", "q2", pods=4, min_member=1, running=["n1"] * 4, created=1),
             job("want", "q1", pods=2, created=2)], actions=A, cycles=5)
    assert evicted(r, 0) == ["hog-2", "hog-3"]
    assert pipelined(r, 0) == ["want-0", "want-1"]
    assert bound(r, 1) == ["want-0", "want-1"]
    for c in range(1, 5):
        assert evicted(r, c) == []
    for c in range(2, 5):
        assert bound(r, c) == []


# reclaim min runtime: departments d1 -> q1 (reclaimer), d2 -> q2 (victim);
# q2 sets reclaimMinRuntime, d2 does not.
@pytest.mark.parametrize("method,want", [("queue", []), ("lca", ["hog-0"])])
def test_reclaim_min_runtime_resolve_method(method, want):
    r = run([node("n1", gpu=1)],
            [queue("d1", gpu_quota=1), queue("d2", gpu_quota=0),
             queue("q1", parent="d1", gpu_quota=1), queue("q2", parent="d2", gpu_quota=0, reclaim_min_runtime="1h")],
            [job("hog", "q2", running=["n1"], last_start=-10, created=1), job("want", "q1", created=2)],
            actions=A, minruntime={"reclaimResolveMethod": method})
    assert evicted(r) == want


def test_reclaim_default_min_runtime_protects():
    nodes = [node("n1", gpu=1)]
    queues = [queue("q1", gpu_quota=1), queue("q2", gpu_quota=0)]
    young = [job("hog", "q2", running=["n1"], last_start=-10, created=1), job("want", "q1", created=2)]
    assert evicted(run(nodes, queues, young, actions=A, minruntime={"defaultReclaimMinRuntime": "5m"})) == []
    old = [job("hog", "q2", running=["n1"], last_start=-600, created=1), job("want", "q1", created=2)]
    assert evicted(run(nodes, queues, old, actions=A, minruntime={"defaultReclaimMinRuntime": "5m"})) == ["hog-0"]


def test_most_over_share_queue_gives_first():
    # q2 is 3 over its quota, q3 is 1 over: q2's job goes first (proportion's queue order)
    r = run([node("n1", gpu=4), node("n2", gpu=2)],
            [queue("q1", gpu_quota=2, weight=0), queue("q2", gpu_quota=1, weight=0), queue("q3", gpu_quota=1, weight=0)],
            [job("a", "q2", pods=4, min_member=4, running=["n1"] * 4, created=1),
             job("b", "q3", pods=2, min_member=2, running=["n2"] * 2, created=2),
             job("want", "q1", pods=2, created=3)], actions=A)
    assert evicted(r) == ["a-0", "a-1", "a-2", "a-3"]
