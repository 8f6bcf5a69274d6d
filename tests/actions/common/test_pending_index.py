"""PendingIndex: what it keeps (admitted jobs by leaf, sorted; capacity groups), when it looks
again (changed or touched jobs; everything on a new queue tree or config), and that its
capacity pass admits and explains exactly what asking every pending job does."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions import allocate
from kai.actions.allocate import schedulable_jobs
from kai.actions.common.pending_index import capacity_checked, current_index
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import make_pod
from tests.actions.common.test_lookalike import _backlog, _pg, _queue


def _session(state, sched=None):
    sched = sched or Scheduler(state, default_config())
    return sched, sched.open_session(RecordingCache(state), now=1_000.0)


def _legacy(ssn, **kw):
    allocate.USE_INDEX = False
    try:
        return schedulable_jobs(ssn, **kw)
    finally:
        allocate.USE_INDEX = True


def test_single_pod_jobs_are_grouped_by_the_capacity_question_they_share():
    state = _backlog(21)
    _, ssn = _session(state)
    idx = current_index(ssn, schedulable_jobs)
    for leaf, groups in idx.groups.items():
        for (preemptible, req), jobs in groups.items():
            for job in jobs:
                lone = job.lone_task()
                assert job.queue == leaf and job.preemptible == preemptible and lone.req.tobytes() == req
                assert lone.gpu_sharing is None and not lone.pod.spec.resource_claims
        grouped = [j.key for jobs in groups.values() for j in jobs] + [j.key for j in idx.singles[leaf]]
        assert sorted(grouped) == sorted(e[2].key for e in idx.leaves[leaf])
        assert idx.leaves[leaf] == sorted(idx.leaves[leaf])


def test_a_new_job_resorts_its_leaf_only():
    state = _backlog(21)
    sched, ssn = _session(state)
    before = current_index(ssn, schedulable_jobs)
    lists = dict(before.leaves)
    ssn.close()
    leaf = sorted(lists)[0]
    state.upsert_podgroup(_pg("late", leaf, "build"))
    state.upsert_pod(make_pod("late-0", "ns", "late", 1, cpu="1", mem="4Gi", created=500))
    _, ssn = _session(state, sched)
    after = current_index(ssn, schedulable_jobs)
    assert after is before                                  # kept, brought up to date
    assert "ns/late" in {e[2].key for e in after.leaves[leaf]}
    assert all(after.leaves[q] is lists[q] for q in lists if q != leaf)


def test_a_changed_queue_tree_rebuilds_the_index():
    state = _backlog(21)
    sched, ssn = _session(state)
    before = current_index(ssn, schedulable_jobs)
    ssn.close()
    state.delete_queue(sorted(before.leaves)[0])
    _, ssn = _session(state, sched)
    assert current_index(ssn, schedulable_jobs) is not before


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), preemptible_only=st.booleans())
def test_capacity_pass_admits_and_explains_as_asking_every_job(seed, preemptible_only):
    state = _backlog(seed)
    _, ssn = _session(state)
    ssn.fit_errors.clear()
    got = {j.key for j in capacity_checked(ssn, current_index(ssn, schedulable_jobs), schedulable_jobs,
                                           preemptible_only)}
    got_errors = dict(ssn.fit_errors)
    ssn.fit_errors.clear()
    want = {j.key for j in _legacy(ssn, preemptible_only=preemptible_only)}
    assert got == want
    # the index also explains jobs it leaves out whatever their preemptibility; every reason
    # asking each job gives is there, with the same text
    assert all(got_errors.get(k) == v for k, v in ssn.fit_errors.items())


def test_a_new_cluster_state_under_the_same_scheduler_rebuilds_the_index():
    """The controller may swap in a fresh state (a bulk load that failed is redone object by
    object) under its Scheduler: nothing kept for the old state is used for the new one."""
    state = _backlog(21)
    sched, ssn = _session(state)
    before = current_index(ssn, schedulable_jobs)
    ssn.job_order_key(next(iter(state.jobs.values())))
    keys = sched.memory.order_keys
    ssn.close()
    sched.state = fresh = _backlog(22)
    _, ssn = _session(fresh, sched)
    after = current_index(ssn, schedulable_jobs)
    assert after is not before and after.state is fresh
    ssn.job_order_key(next(iter(fresh.jobs.values())))
    assert sched.memory.order_keys is not keys


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), blind=st.booleans())
def test_filled_runs_end_where_a_comparison_from_their_head_ends(seed, blind):
    """``fill_runs`` records, for every run head a walk could pass copies after, the end a
    comparison from that position reaches; a leaf with records already is left alone."""
    from kai.actions.common.lookalike import look_alike, look_alike_blind
    from kai.actions.common.pending_index import fill_runs
    alike = look_alike_blind if blind else look_alike
    state = _backlog(seed, jobs_labels=blind)
    _, ssn = _session(state)
    idx = current_index(ssn, schedulable_jobs)
    some = sorted(idx.leaves)[0] if idx.leaves else None
    if some is not None:
        idx.runs[some] = {"kept": 1}
    fill_runs(idx, alike)
    for leaf, entries in idx.leaves.items():
        memo = idx.runs[leaf]
        if leaf == some:
            assert memo == {"kept": 1}
            continue
        heads = sorted(pos for (fn, pos) in memo)
        assert heads and heads[0] == 1 and all(fn is alike for fn, _ in memo)
        for pos in heads:
            end = memo[(alike, pos)]
            head = entries[pos - 1][2]
            assert all(alike(head, e[2]) for e in entries[pos:end])
            assert end == len(entries) or not alike(head, entries[end][2])
        # the next head is the first job after a run: every job is covered once
        assert heads[1:] == [memo[(alike, p)] + 1 for p in heads[:-1]]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), steps=st.lists(st.sampled_from(["limit", "job", "gone", "none"]), min_size=2,
                                                    max_size=5))
def test_kept_refusals_follow_the_cluster_across_sessions(seed, steps):
    """The held groups' fit errors are kept from session to session while the groups and
    their refusals stay the same; after any change (a queue's new limit, a new job, a running
    pod gone) each session still records exactly what asking every pending job records."""
    import random
    rng = random.Random(seed)
    state = _backlog(seed)
    sched = Scheduler(state, default_config())
    for step in steps:
        leaves = sorted(q for q in state.queues if q.startswith("q"))
        if step == "limit":
            name = rng.choice(leaves)
            quota = rng.choice([0, 1, 2])
            state.upsert_queue(_queue(name, state.queues[name].spec.parent_queue, quota,
                                      rng.choice([-1, quota, quota + 1, quota + 3])))
        elif step == "job":
            name = f"late{rng.randrange(10**6)}"
            state.upsert_podgroup(_pg(name, rng.choice(leaves), rng.choice(["train", "inference"])))
            state.upsert_pod(make_pod(f"{name}-0", "ns", name, rng.choice([1, 2]), cpu="1", mem="4Gi",
                                      created=50))
        elif step == "gone":
            running = [p for p in state.pods.values() if p.node_name]
            if running:
                state.delete_pod(rng.choice(running).uid)
        _, ssn = _session(state, sched)
        try:
            for preemptible_only in (False, True):          # allocate's pass, then consolidation's
                ssn.fit_errors.clear()
                got = {j.key for j in capacity_checked(ssn, current_index(ssn, schedulable_jobs),
                                                       schedulable_jobs, preemptible_only)}
                got_errors = dict(ssn.fit_errors)
                ssn.fit_errors.clear()
                want = {j.key for j in _legacy(ssn, preemptible_only=preemptible_only)}
                assert got == want
                assert all(got_errors.get(k) == v for k, v in ssn.fit_errors.items())
        finally:
            ssn.close()
