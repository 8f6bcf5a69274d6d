"""The walk reclaim and preempt share: what the second action reuses from the first, and (end
to end) that reusing it decides exactly what building each walk afresh decides."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions.common import shared_walk
from kai.actions.common.lookalike import look_alike
from kai.actions.common.shared_walk import pending_walk
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from tests.actions.common.test_lookalike import _backlog, _decisions


def _session(state):
    return Scheduler(state, default_config()).open_session(RecordingCache(state), now=1_000.0)


def test_second_walk_reuses_the_first_until_an_allocation_event():
    state = _backlog(3)
    ssn = _session(state)
    first = pending_walk(ssn, None)
    second = pending_walk(ssn, None)
    assert first is not None and second is not None
    # the same sorted lists, not copies, and the same jobs in the same order
    assert all(second.leaves[q] is first.leaves[q] for q in first.leaves)
    assert [j.key for j in first] == [j.key for j in second]
    # an allocation event that changed one job: only that job's leaf is sorted again
    job = next(iter(first.leaves.values()))[0][2]
    ssn.touched_jobs.add(job.key)
    ssn.alloc_events += 1                      # what a Statement operation does
    third = pending_walk(ssn, None)
    assert third.leaves[job.queue] is not first.leaves[job.queue]
    assert [(e[0], e[2].key) for e in third.leaves[job.queue]] == \
        [(e[0], e[2].key) for e in first.leaves[job.queue]]                # nothing really moved
    assert all(third.leaves[q] is first.leaves[q] for q in first.leaves if q != job.queue)


def test_a_push_never_changes_a_shared_list():
    state = _backlog(5)
    ssn = _session(state)
    first = pending_walk(ssn, None)
    shared = {q: list(e) for q, e in first.leaves.items()}
    second = pending_walk(ssn, None)
    job = second.pop()
    second.push(job)
    assert {q: list(e) for q, e in first.leaves.items()} == shared
    assert len(second.leaves[job.queue]) == len(shared[job.queue]) + 1     # its own copy grew


def test_look_alike_runs_are_found_once():
    calls = []

    def counting(a, b):
        calls.append((a.key, b.key))
        return look_alike(a, b)

    counting.equal_init_requests = look_alike.equal_init_requests      # runs are kept only so

    state = _backlog(11)
    ssn = _session(state)
    skipped = []
    for _ in range(2):
        walk = pending_walk(ssn, None)
        n = 0
        for job in walk:
            n += walk.skip_alike(job, counting)
        skipped.append(n)
    assert skipped[0] == skipped[1] > 0
    # the second walk read every run's end from the first: no comparison of its own
    first_calls = len(calls)
    walk = pending_walk(ssn, None)
    for job in walk:
        walk.skip_alike(job, counting)
    assert len(calls) == first_calls


def _churn(state, rng, cycle: int) -> None:
    """What the informers bring between two cycles: new pending copies and odd jobs, deleted
    pods, a running pod finishing, a PodGroup moved to another queue or priority, a queue
    dropped from the tree."""
    from kai.sim.synthetic import make_pod
    from tests.actions.common.test_lookalike import _pg
    queues = sorted(q for q in state.queues if q.startswith("q"))
    for k in range(rng.randint(0, 6)):
        queue = rng.choice(queues)
        name = f"{queue}-new{cycle}-{k}"
        state.upsert_podgroup(_pg(name, queue, rng.choice(["train", "build", "inference"])))
        state.upsert_pod(make_pod(f"{name}-0", "ns", name, rng.choice([1, 2]), cpu="1", mem="4Gi",
                                  created=100 + cycle))
    pods = sorted(state.pods)
    for uid in rng.sample(pods, min(len(pods), rng.randint(0, 3))):
        state.delete_pod(uid)
    jobs = sorted(state.podgroups)
    if jobs and rng.random() < 0.5:
        pg = state.podgroups[rng.choice(jobs)]
        state.upsert_podgroup(_pg(pg.metadata.name, rng.choice(queues), rng.choice(["train", "build"])))
    if len(queues) > 2 and rng.random() < 0.2:
        state.delete_queue(rng.choice(queues))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_the_index_kept_across_cycles_decides_as_building_it_afresh(seed):
    """Every default action over random backlogs for four cycles, with the informers' churn
    between them: the walk and the capacity pass from the index kept across cycles decide
    (placements, evictions, reasons) as ones built afresh each time."""
    import random
    from kai.actions import allocate
    from kai.actions.common import victims
    got = []
    for share in (True, False):
        shared_walk.SHARE = allocate.USE_INDEX = victims.USE_INDEX = share
        try:
            state = _backlog(seed)
            rng = random.Random(seed)
            sched = Scheduler(state, default_config())
            runs = []
            for cycle in range(4):
                runs.append(_decisions(sched.run_cycle(RecordingCache(state), now=1_000.0 + cycle)))
                _churn(state, rng, cycle)
            got.append(runs)
        finally:
            shared_walk.SHARE = allocate.USE_INDEX = victims.USE_INDEX = True
    assert got[0] == got[1]
