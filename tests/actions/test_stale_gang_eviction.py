"""stalegangeviction: gangs running below minMember are evicted after the grace period."""
from __future__ import annotations

import gc

import pytest

from victim_scenarios import evicted, evicted_by, job, node, queue, run

A = "allocate, stalegangeviction"


def _broken_gang(**kw):
    # minMember 2, one pod running, the other pending and unplaceable (the only GPU is taken)
    return [node("n1", gpu=1)], [queue("q1")], [job("g", "q1", pods=2, min_member=2, running=["n1"], **kw)]


@pytest.mark.parametrize("grace,interval,cycles,evict_cycle", [
    (60, 30, 4, 2),        # stale at t0; evicted at t0+60, not at t0+30
    (60, 59, 2, None),     # t0+59 < grace
    (0, 1, 1, 0),          # no grace: evicted at once
    (-1, 1000, 3, None),   # negative: never
])
def test_evicted_after_grace_not_before(grace, interval, cycles, evict_cycle):
    nodes, queues, jobs = _broken_gang()
    r = run(nodes, queues, jobs, actions=A, cycles=cycles, interval=interval, grace=grace)
    for c in range(cycles):
        want = ["g-0"] if c == evict_cycle else []
        assert evicted(r, c) == want, c
    if evict_cycle is not None:
        assert evicted_by(r, evict_cycle) == {"g-0": "stalegangeviction"}


def test_default_grace_is_60s():
    nodes, queues, jobs = _broken_gang()
    r = run(nodes, queues, jobs, actions=A, cycles=3, interval=30)
    assert [evicted(r, c) for c in range(3)] == [[], [], ["g-0"]]


def test_stale_since_annotation_counts():
    nodes, queues, jobs = _broken_gang(stale_since=-61)
    r = run(nodes, queues, jobs, actions=A)
    assert evicted(r) == ["g-0"]


@pytest.mark.parametrize("jobs", [
    [job("ok", "q1", pods=2, min_member=2, running=["n1", "n1"])],                 # gang satisfied
    [job("done", "q1", pods=3, min_member=2, succeeded=1, running=["n1"])],        # a pod succeeded
    [job("idle", "q1", pods=2, min_member=2, running=[])],                         # nothing running
], ids=["satisfied", "has-succeeded", "not-running"])
def test_not_stale(jobs):
    r = run([node("n1", gpu=2)], [queue("q1")], jobs, actions=A, cycles=2, interval=100, grace=0)
    assert evicted(r, 0) == [] and evicted(r, 1) == []


def test_recovered_gang_is_not_evicted():
    # the missing pod becomes placeable: allocate completes the gang, staleness clears
    r = run([node("n1", gpu=2)], [queue("q1")],
            [job("g", "q1", pods=2, min_member=2, running=["n1"], stale_since=-1000)],
            actions=A, cycles=2, interval=100, grace=60)
    assert evicted(r, 0) == [] and evicted(r, 1) == []


def test_watch_list_decides_as_a_walk_over_every_job():
    """stalegangeviction looks only at jobs that changed or were stale (StaleWatch in the
    Scheduler's memory); a Scheduler made afresh each cycle walks every job. Same evictions,
    cycle after cycle, while gang members are deleted at random between cycles."""
    import random

    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.simulator import _advance, build_state
    from kai.sim.synthetic import mixed_cluster

    for seed in range(15):
        rng = random.Random(seed)
        shape = (seed, rng.randint(2, 6), rng.randint(8, 30))
        states = [build_state(mixed_cluster(*shape)) for _ in range(2)]
        kept = Scheduler(states[0], default_config())
        now = 1_704_070_800.0
        for _cycle in range(5):
            got = []
            for k, state in enumerate(states):
                sched = kept if k == 0 else Scheduler(state, default_config())
                result = sched.run_cycle(RecordingCache(state), now=now)
                got.append(([(d.pod, d.action) for d in result.evictions], [d.pod for d in result.bindings],
                            sorted(result.unschedulable.items())))
                _advance(state, result)
            assert got[0] == got[1], (seed, _cycle)
            running = sorted(p.key for p in states[0].pods.values() if p.node_name and p.job_key
                             and len(states[0].jobs[p.job_key].tasks) > 1)
            if running and rng.random() < 0.7:
                key = rng.choice(running)
                for state in states:
                    state.delete_pod(next(p.uid for p in state.pods.values() if p.key == key))
            now += rng.choice([1.0, 30.0, 61.0])


def test_stale_watch_belongs_to_its_state_not_its_address():
    from kai.actions.stale_gang_eviction import StaleWatch
    from kai.cache.cluster_state import ClusterState
    kept: list = []                        # (memory, the address its state had)
    for _ in range(500):                   # states made and dropped until CPython reuses an address
        state = ClusterState()
        reused = any(gone == id(state) for _, gone in kept)
        assert not any(m.valid_for(state) for m, _ in kept)
        kept.append((StaleWatch(state), id(state)))
        assert kept[-1][0].valid_for(state)
        del state
        gc.collect()                       # (a ClusterState holds reference cycles)
        if reused:
            break
    assert reused                          # a later state took the address: the case was exercised
