"""consolidation: scenario tables through ``kai simulate`` (nodes, queues, jobs in; moves out).

A move is an eviction (action ``consolidation``) of a running pod plus that pod pipelined on
another node; the pending job is pipelined onto the room the moves free. Nothing may be
evicted for good, so a scenario where some victim cannot be placed again is refused whole.
"""
from __future__ import annotations

import msgspec
import pytest

from victim_scenarios import START, config, evicted, evicted_by, job, manifests, node, pipelined, queue

from kai.actions.common.solver import place_again
from kai.api import constants as C
from kai.api.k8s import PodStatus
from kai.framework.statement import Statement
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.simulator import build_state, simulate

A = "allocate, consolidation"
Q = [queue("q1")]


def run(nodes, queues, jobs, actions=A, cycles=1, cap=None, **plugin_args):
    cfg = config(actions, **plugin_args)
    if cap is not None:
        cfg.max_consolidation_preemptees = cap
    return simulate(manifests(nodes, queues, jobs), cfg, cycles=cycles, start_time=START)


def _two_half_empty():
    """n1 and n2 (8 GPUs) each run a 4-GPU pod; 'big' wants a whole node."""
    return ([node("n1", gpu=8), node("n2", gpu=8)], Q,
            [job("a", "q1", gpu=4, running=["n1"], created=1),
             job("b", "q1", gpu=4, running=["n2"], created=2),
             job("big", "q1", gpu=8, created=3)])


def _two_by_two():
    """Emptying either node takes two moves: a, b on n1 and c, d on n2 (2 GPUs each)."""
    return ([node("n1", gpu=8), node("n2", gpu=8)], Q,
            [job("a", "q1", gpu=2, running=["n1"], created=1),
             job("b", "q1", gpu=2, running=["n1"], created=2),
             job("c", "q1", gpu=2, running=["n2"], created=3),
             job("d", "q1", gpu=2, running=["n2"], created=4),
             job("big", "q1", gpu=8, created=5)])


# (id, nodes, queues, jobs, extra run() kwargs, expected evicted, expected pipelined)
CASES = [
    ("moves-one-pod-for-a-whole-node-job", *_two_half_empty(), {},
     ["b-0"], ["b-0", "big-0"]),
    ("refused-when-a-victim-cannot-be-placed-again",
     [node("n1", gpu=8), node("n2", gpu=8)], Q,
     [job("a", "q1", gpu=5, running=["n1"], created=1),
      job("b", "q1", gpu=5, running=["n2"], created=2),
      job("big", "q1", gpu=6, created=3)], {},
     [], []),
    ("not-enough-room-in-the-cluster-is-not-tried",
     [node("n1", gpu=8), node("n2", gpu=8)], Q,
     [job("a", "q1", gpu=5, running=["n1"], created=1),
      job("b", "q1", gpu=5, running=["n2"], created=2),
      job("big", "q1", gpu=7, created=3)], {},
     [], []),
    ("non-preemptible-running-jobs-are-never-moved",
     [node("n1", gpu=8), node("n2", gpu=8)], Q,
     [job("a", "q1", gpu=4, running=["n1"], priority_class="inference", created=1),
      job("b", "q1", gpu=4, running=["n2"], priority_class="inference", created=2),
      job("big", "q1", gpu=8, created=3)], {},
     [], []),
    ("only-the-preemptible-one-moves",
     [node("n1", gpu=8), node("n2", gpu=8)], Q,
     [job("a", "q1", gpu=4, running=["n1"], created=1),
      job("b", "q1", gpu=4, running=["n2"], priority_class="inference", created=2),
      job("big", "q1", gpu=8, created=3)], {},
     ["a-0"], ["a-0", "big-0"]),
    ("non-preemptible-pending-job-is-not-consolidated-for",
     [node("n1", gpu=8), node("n2", gpu=8)], Q,
     [job("a", "q1", gpu=4, running=["n1"], created=1),
      job("b", "q1", gpu=4, running=["n2"], created=2),
      job("big", "q1", gpu=8, priority_class="build", created=3)], {},
     [], []),
    ("victims-from-any-queue",
     [node("n1", gpu=8), node("n2", gpu=8)], [queue("q1"), queue("q2")],
     [job("a", "q1", gpu=4, running=["n1"], created=1),
      job("b", "q2", gpu=4, running=["n2"], created=2),
      job("big", "q1", gpu=8, created=3)], {},
     ["b-0"], ["b-0", "big-0"]),
    ("gang-victim-moved-whole",
     [node("n1", gpu=8), node("n2", gpu=8)], Q,
     [job("a", "q1", gpu=4, running=["n1"], created=1),
      job("g", "q1", pods=2, gpu=2, running=["n2", "n2"], created=2),
      job("big", "q1", gpu=8, created=3)], {},
     ["g-0", "g-1"], ["big-0", "g-0", "g-1"]),
    ("two-moves-within-the-default-cap", *_two_by_two(), {},
     ["c-0", "d-0"], ["big-0", "c-0", "d-0"]),
    ("cap-of-one-preemptee-refuses-two-moves", *_two_by_two(), {"cap": 1},
     [], []),
    ("cap-zero-disables", *_two_half_empty(), {"cap": 0},
     [], []),
    ("spread-disables-consolidation", *_two_half_empty(),
     {"nodeplacement": {"gpu": "spread", "cpu": "spread"}},
     [], []),
]


@pytest.mark.parametrize("nodes,queues,jobs,kw,want_evicted,want_pipelined",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_consolidation(nodes, queues, jobs, kw, want_evicted, want_pipelined):
    rep = run(nodes, queues, jobs, **kw)
    assert evicted(rep) == want_evicted
    assert pipelined(rep) == want_pipelined
    assert set(evicted_by(rep).values()) <= {"consolidation"}
    # every moved pod is pipelined again: consolidation never evicts for good
    assert set(want_evicted) <= set(pipelined(rep))


def test_moved_pod_goes_where_the_room_is():
    rep = run(*_two_half_empty())
    cyc = rep["cycles"][0]
    assert cyc["bindings"] == []
    ev = cyc["evictions"][0]
    assert ev["pod"] == "default/b-0" and ev["action"] == "consolidation"
    assert ev.get("preemptor") == "default/big"


def test_pod_placed_back_on_its_own_node_is_kept():
    """KAI's elastic case: the smaller victim ends up where it was, so it is not evicted."""
    rep = run([node("n1", gpu=4), node("n2", gpu=4)], Q,
              [job("r0", "q1", gpu=2, running=["n1"], created=1),
               job("r1", "q1", gpu=2, running=["n2"], created=2),
               job("r2", "q1", gpu=1, running=["n2"], created=3),
               job("p", "q1", pods=2, min_member=1, gpu=3, created=4)])
    assert evicted(rep) == ["r1-0"]
    assert pipelined(rep) == ["p-0", "r1-0"]


def test_allocate_first_needs_no_move():
    """A job that fits as is is placed by allocate; consolidation has nothing to do."""
    rep = run([node("n1", gpu=8), node("n2", gpu=8)], Q,
              [job("a", "q1", gpu=4, running=["n1"], created=1),
               job("small", "q1", gpu=4, created=2)])
    assert evicted(rep) == []
    assert [b["pod"] for b in rep["cycles"][0]["bindings"]] == ["default/small-0"]


# ------------------------------------------------------------------ statement
def _session(nodes, jobs):
    state = build_state(manifests(nodes, Q, jobs))
    cache = RecordingCache(state)
    ssn = Scheduler(state, config(A)).open_session(cache, START)
    return state, cache, ssn


def _task(ssn, name):
    return next(iter(ssn.jobs[f"default/{name}"].tasks.values()))


def test_statement_move_commits_evict_on_old_node_and_pipeline_on_new():
    state, cache, ssn = _session([node("n1", gpu=8), node("n2", gpu=8)],
                                 [job("a", "q1", gpu=6, running=["n1"], created=1),
                                  job("b", "q1", gpu=2, running=["n2"], created=2)])
    b = _task(ssn, "b")
    stmt = Statement(ssn)
    stmt.evict(b, "consolidation", "default/big")
    assert b.status == C.PodStatus.RELEASING
    assert place_again(ssn, ssn.jobs["default/b"], stmt, [b])
    assert (b.node_name, b.status) == ("n1", C.PodStatus.PIPELINED)     # binpacked next to a
    stmt.commit()
    res = cache.result
    assert [(d.pod, d.node, d.action) for d in res.evictions] == [("default/b-0", "n2", "consolidation")]
    assert [(d.pod, d.node) for d in res.pipelined] == [("default/b-0", "n1")]
    assert state.nodes.releasing[:, state.nodes.by_name["n2"].idx].sum() > 0   # terminating on n2
    ssn.close()
    # after the session the moved pod is what the cluster sees: terminating on its old node
    assert (b.status, b.node_name) == (C.PodStatus.RELEASING, "n2")


def test_statement_placed_back_on_its_own_node_is_an_unevict():
    state, cache, ssn = _session([node("n1", gpu=4)], [job("c", "q1", gpu=4, running=["n1"], created=1)])
    c = _task(ssn, "c")
    stmt = Statement(ssn)
    stmt.evict(c, "consolidation", "default/big")
    assert place_again(ssn, ssn.jobs["default/c"], stmt, [c])
    assert c.node_name == "n1"
    stmt.commit()
    assert cache.result.evictions == [] and cache.result.pipelined == []
    assert (c.status, c.node_name) == (C.PodStatus.RUNNING, "n1")
    ssn.close()
    assert c.status == C.PodStatus.RUNNING


def test_place_again_is_all_or_nothing():
    state, cache, ssn = _session([node("n1", gpu=4), node("n2", gpu=4)],
                                 [job("g", "q1", pods=2, gpu=3, running=["n1", "n2"], created=1),
                                  job("x", "q1", gpu=4, created=2)])
    g = sorted(ssn.jobs["default/g"].tasks.values(), key=lambda t: t.key)
    stmt = Statement(ssn)
    for t in g:
        stmt.evict(t, "consolidation", "default/x")
    # take n2's room: only one of g's pods could go back now
    x = _task(ssn, "x")
    from kai.actions.allocate import allocate_job
    ok, _ = allocate_job(ssn, ssn.jobs["default/x"], stmt)
    assert ok and x.node_name
    n = len(stmt)
    assert not place_again(ssn, ssn.jobs["default/g"], stmt, g)
    assert len(stmt) == n and all(t.status == C.PodStatus.RELEASING for t in g)
    stmt.discard()
    assert all(t.status == C.PodStatus.RUNNING for t in g)
    ssn.close()


# ------------------------------------------------------------------ over cycles
def _controller_cycles(nodes, queues, jobs, cycles, actions=A):
    """Cycles where evicted pods come back Pending (as their controller recreates them) and
    bound pods start running. Returns the per-cycle results and the final state."""
    state = build_state(manifests(nodes, queues, jobs))
    sched = Scheduler(state, config(actions))
    results = []
    now = START
    for _ in range(cycles):
        cache = RecordingCache(state)
        res = sched.run_cycle(cache, now=now)
        results.append(res)
        for d in res.bindings:
            p = next(p for p in state.pods.values() if p.key == d.pod)
            pod = p.pod
            state.upsert_pod(msgspec.structs.replace(
                pod, spec=msgspec.structs.replace(pod.spec, node_name=d.node), status=PodStatus(phase="Running")))
        for d in res.evictions:
            p = next(p for p in state.pods.values() if p.key == d.pod)
            pod = p.pod
            state.delete_pod(p.uid)
            state.upsert_pod(msgspec.structs.replace(
                pod, spec=msgspec.structs.replace(pod.spec, node_name=""), status=PodStatus(phase="Pending")))
        now += 1.0
    return results, state


@pytest.mark.parametrize("case", [_two_half_empty, _two_by_two])
def test_converges_without_ping_pong(case):
    nodes, queues, jobs = case()
    results, state = _controller_cycles(nodes, queues, jobs, cycles=6)
    moves = [len(r.evictions) for r in results]
    assert moves[0] > 0 and sum(moves[1:]) == 0, moves
    running = {p.key: p.node_name for p in state.pods.values() if p.pod.status.phase == "Running"}
    assert len(running) == len(state.pods)                  # everyone runs in the end
    big = running["default/big-0"]
    assert all(n != big for k, n in running.items() if k != "default/big-0")


# ------------------------------------------------------------------ consolidating reclaim
@pytest.mark.parametrize("allow,want_evicted,want_pipelined",
                         [(True, ["q0b-0"], ["q0b-0", "q1a-0"]), (False, [], [])])
def test_reclaim_moves_victims_unless_disallowed(allow, want_evicted, want_pipelined):
    """KAI's reclaim-consolidate-then-pipeline: q0 is exactly at its quota, so none of its pods
    may be taken -- but one may be moved next to its sibling, which frees a node for q1. With
    --allow-consolidating-reclaim=false the move is not considered and nothing happens."""
    cfg = config("reclaim")
    cfg.allow_consolidating_reclaim = allow
    m = manifests([node("n0", gpu=3), node("n1", gpu=2)],
                  [queue("q0", gpu_quota=3, weight=0), queue("q1", gpu_quota=2, weight=0)],
                  [job("q0a", "q0", gpu=2, running=["n0"], created=1),
                   job("q0b", "q0", gpu=1, running=["n1"], created=2),
                   job("q1a", "q1", gpu=2, created=3)])
    rep = simulate(m, cfg, start_time=START)
    assert evicted(rep) == want_evicted
    assert set(evicted_by(rep).values()) <= {"reclaim"}
    assert pipelined(rep) == want_pipelined
