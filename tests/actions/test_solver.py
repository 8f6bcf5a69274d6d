"""JobSolver and victim helpers: fewest victims, pruning, GetTasksToEvict, statement hygiene."""
from __future__ import annotations

import numpy as np

from victim_scenarios import START, config, evicted, job, manifests, node, pipelined, queue, run
from kai.actions.common.solver import JobSolver
from kai.api import constants as C
from kai.actions.common.victims import VictimCandidates, tasks_to_evict
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.simulator import build_state

A = "allocate, preempt"


def _session(nodes, queues, jobs):
    state = build_state(manifests(nodes, queues, jobs))
    sched = Scheduler(state, config(A))
    return sched.open_session(RecordingCache(state), now=START)


def test_fewest_victims_over_many_single_pod_jobs():
    # 5 nodes x 8 GPUs full of 40 single-pod victims; a 13-pod gang needs exactly 13 of them
    victims = [job(f"v{i:02d}", "q1", running=[f"n{i // 8}"], created=i) for i in range(40)]
    r = run([node(f"n{i}") for i in range(5)], [queue("q1")],
            victims + [job("g", "q1", pods=13, priority_class="build-preemptible", created=100)], actions=A)
    assert len(evicted(r)) == 13
    assert evicted(r) == sorted(f"v{i:02d}-0" for i in range(27, 40))    # newest first
    assert len(pipelined(r)) == 13


def test_victims_on_unused_nodes_are_given_back():
    # newest first: d (n2), c (n1), b (n2) -> n2 frees 2 GPUs for the 2-GPU pod; c is given back
    r = run([node("n1", gpu=2), node("n2", gpu=2)], [queue("q1")],
            [job("a", "q1", running=["n1"], created=1), job("b", "q1", running=["n2"], created=2),
             job("c", "q1", running=["n1"], created=3), job("d", "q1", running=["n2"], created=4),
             job("p", "q1", gpu=2, priority_class="build-preemptible", created=5)], actions=A)
    assert evicted(r) == ["b-0", "d-0"]
    assert pipelined(r) == ["p-0"]


def test_tasks_to_evict_elastic_then_gang():
    ssn = _session([node("n1", gpu=4)], [queue("q1")],
                   [job("el", "q1", pods=4, min_member=2, running=["n1"] * 4, created=1)])
    el = ssn.jobs["default/el"]
    first = tasks_to_evict(el, ssn.task_order_key)
    assert [t.name for t in first] == ["el-3"]
    first[0].status = C.PodStatus.RELEASING
    assert [t.name for t in tasks_to_evict(el, ssn.task_order_key)] == ["el-2"]
    for t in el.tasks.values():
        if t.name == "el-2":
            t.status = C.PodStatus.RELEASING
    assert [t.name for t in tasks_to_evict(el, ssn.task_order_key)] == ["el-1", "el-0"]


def test_failed_solve_leaves_session_untouched():
    ssn = _session([node("n1", gpu=2)], [queue("q1")],
                   [job("low", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1),
                    job("big", "q1", gpu=4, priority_class="build-preemptible", created=2)])
    idle, rel = ssn.idle.copy(), ssn.releasing.copy()
    statuses = {t.key: t.status for j in ssn.jobs.values() for t in j.tasks.values()}
    big = ssn.jobs["default/big"]
    cands = VictimCandidates(ssn)
    sol = JobSolver(ssn, "preempt", []).solve(big, cands.order(["q1"], lambda v: v.key != big.key))
    assert sol is None
    assert np.array_equal(idle, ssn.idle) and np.array_equal(rel, ssn.releasing)
    assert statuses == {t.key: t.status for j in ssn.jobs.values() for t in j.tasks.values()}


def test_rejecting_validator_blocks_the_chunk_and_the_next_victim_is_used():
    ssn = _session([node("n1", gpu=1), node("n2", gpu=1)], [queue("q1")],
                   [job("a", "q1", running=["n1"], created=1), job("b", "q1", running=["n2"], created=2),
                    job("p", "q1", priority_class="build-preemptible", created=3)])
    p = ssn.jobs["default/p"]
    no_b = lambda ssn_, pre, victims: "default/b" not in victims    # noqa: E731
    sol = JobSolver(ssn, "preempt", [no_b]).solve(p, VictimCandidates(ssn).order(["q1"], lambda v: v is not p))
    assert sol is not None and list(sol.victims) == ["default/a"]
    sol.stmt.discard()
