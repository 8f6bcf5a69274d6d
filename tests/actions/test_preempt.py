"""preempt: scenario tables through ``kai simulate`` (nodes, queues, jobs in; evictions out)."""
from __future__ import annotations

import pytest

from victim_scenarios import bound, evicted, evicted_by, job, node, pipelined, queue, run

A = "allocate, preempt"

# (id, nodes, queues, jobs, expected evicted pods, expected pipelined pods)
CASES = [
    ("lower-priority-victim",
     [node("n1", gpu=2)], [queue("q1")],
     [job("low", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1),
      job("high", "q1", pods=2, priority_class="build-preemptible", created=2)],
     ["low-0", "low-1"], ["high-0", "high-1"]),
    ("gang-victim-evicted-whole",
     [node("n1", gpu=1), node("n2", gpu=1)], [queue("q1")],
     [job("gang", "q1", pods=2, running=["n1", "n2"], created=1),
      job("high", "q1", pods=1, priority_class="build-preemptible", created=2)],
     ["gang-0", "gang-1"], ["high-0"]),
    ("elastic-victim-shrinks-one-at-a-time",
     [node("n1", gpu=4)], [queue("q1")],
     [job("el", "q1", pods=4, min_member=1, running=["n1"] * 4, created=1),
      job("high", "q1", pods=2, priority_class="build-preemptible", created=2)],
     ["el-2", "el-3"], ["high-0", "high-1"]),
    ("non-preemptible-never-a-victim",
     [node("n1", gpu=1)], [queue("q1")],
     [job("build", "q1", pods=1, priority_class="build", running=["n1"], created=1),
      job("inf", "q1", pods=1, priority_class="inference", created=2)],
     [], []),
    ("equal-priority-is-not-preempted",
     [node("n1", gpu=1)], [queue("q1")],
     [job("a", "q1", running=["n1"], created=1), job("b", "q1", created=2)],
     [], []),
    ("higher-priority-is-not-preempted",
     [node("n1", gpu=1)], [queue("q1")],
     [job("a", "q1", priority_class="build-preemptible", running=["n1"], created=1),
      job("b", "q1", created=2)],
     [], []),
    ("other-queue-is-not-a-preempt-victim",
     [node("n1", gpu=1)], [queue("q1"), queue("q2")],
     [job("a", "q2", running=["n1"], created=1),
      job("b", "q1", priority_class="build-preemptible", created=2)],
     [], []),
    ("no-eviction-when-preemptor-cannot-fit",
     [node("n1", gpu=2)], [queue("q1")],
     [job("low", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1),
      job("big", "q1", pods=1, gpu=4, priority_class="build-preemptible", created=2)],
     [], []),
    ("fewest-victims-lowest-priority-newest-first",
     [node("n1", gpu=3)], [queue("q1")],
     [job("mid", "q1", priority_class="build-preemptible", running=["n1"], created=1),
      job("old", "q1", running=["n1"], created=2),
      job("new", "q1", running=["n1"], created=3),
      job("high", "q1", priority_class="build", created=4)],
     ["new-0"], ["high-0"]),
]


@pytest.mark.parametrize("nodes,queues,jobs,want_evicted,want_pipelined",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preempt_table(nodes, queues, jobs, want_evicted, want_pipelined):
    r = run(nodes, queues, jobs, actions=A)
    assert evicted(r) == sorted(want_evicted)
    assert pipelined(r) == sorted(want_pipelined)
    assert set(evicted_by(r).values()) <= {"preempt"}


def test_preemptor_binds_next_cycle_and_converges():
    r = run([node("n1", gpu=2)], [queue("q1")],
            [job("low", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1),
             job("high", "q1", pods=1, priority_class="build-preemptible", created=2)],
            actions=A, cycles=4)
    assert evicted(r, 0) == ["low-1"]
    assert bound(r, 1) == ["high-0"]
    for c in (1, 2, 3):
        assert evicted(r, c) == []
    assert bound(r, 2) == [] and bound(r, 3) == []


MINRT = [
    # (id, queue preemptMinRuntime, plugin default, victim last_start offset, evicted?)
    ("queue-protects-young-victim", "60s", None, -10, False),
    ("old-victim-not-protected", "60s", None, -120, True),
    ("plugin-default-protects", None, "1m", -10, False),
    ("no-min-runtime", None, None, -1, True),
]


@pytest.mark.parametrize("qmin,default,start,want", [c[1:] for c in MINRT], ids=[c[0] for c in MINRT])
def test_preempt_min_runtime(qmin, default, start, want):
    args = {"minruntime": {"defaultPreemptMinRuntime": default}} if default else {}
    r = run([node("n1", gpu=1)], [queue("q1", preempt_min_runtime=qmin)],
            [job("low", "q1", running=["n1"], last_start=start, created=1),
             job("high", "q1", priority_class="build-preemptible", created=2)], actions=A, **args)
    assert evicted(r) == (["low-0"] if want else [])


@pytest.mark.parametrize("need,want", [(2, ["el-1", "el-2"]), (3, [])])
def test_protected_elastic_victim_only_shrinks_to_min(need, want):
    r = run([node("n1", gpu=3)], [queue("q1", preempt_min_runtime="1h")],
            [job("el", "q1", pods=3, min_member=1, running=["n1"] * 3, last_start=-10, created=1),
             job("high", "q1", pods=need, priority_class="build-preemptible", created=2)], actions=A)
    assert evicted(r) == want


def test_kai_docs_priority_example_preempts_over_limit():
    """KAI's docs/priority example: queue ``test`` quota 1 / limit 1 GPU, ``train`` running, a
    ``build`` pod submitted. Its queue is at its limit, but the victim's release makes room:
    build preempts train (judged after the victim's resources are released)."""
    r = run([node("n1", gpu=8)], [queue("test", gpu_quota=1, gpu_limit=1)],
            [job("train", "test", priority_class="train", running=["n1"], created=1),
             job("build", "test", priority_class="build", created=2)], actions=A, cycles=2)
    assert evicted(r, 0) == ["train-0"]
    assert pipelined(r, 0) == ["build-0"]
    assert bound(r, 1) == ["build-0"]


def test_over_limit_preemptor_without_victims_in_its_queue_is_not_searched():
    """Over its limit and no lower-priority victim in its own queue: nothing is evicted."""
    r = run([node("n1", gpu=8)], [queue("test", gpu_quota=1, gpu_limit=1), queue("other")],
            [job("train", "test", priority_class="build", running=["n1"], created=1),
             job("low", "other", priority_class="train", running=["n1"], created=2),
             job("build", "test", priority_class="build", created=3)], actions=A)
    assert evicted(r) == [] and pipelined(r) == []


def test_nonpreemptible_over_quota_is_not_a_preemptor():
    """A non-preemptible job may use only in-quota resources: evicting a preemptible job of its
    queue does not change its queue's non-preemptible usage, so it is skipped up front."""
    r = run([node("n1", gpu=2)], [queue("q", gpu_quota=1)],
            [job("inf", "q", priority_class="inference", running=["n1"], created=1),
             job("train", "q", priority_class="train", running=["n1"], created=2),
             job("build", "q", priority_class="build", created=3)], actions=A)
    assert evicted(r) == []
