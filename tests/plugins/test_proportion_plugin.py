"""proportion: per-cycle fair share (KAI's division), session vectors, capacity, capacity checks.

Fair shares are read from ``report["queues"]`` of ``kai.sim.simulator.simulate`` runs built
in-test. The expected numbers are worked out by hand from KAI's resource_division.go
(deserved pass, over-quota rounds by priority with floored slices, remainder dealt by
largest fractional remainder) and are written next to each case.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest
from proportion_builders import allocated, bound, fair, job, node, open_session, queue, res, run

from kai.plugins.proportion import Proportion, k_value_argument

# ---------------------------------------------------------------------------------------------
# fair share: worked examples (gpu), table-driven

CASES = [
    pytest.param(
        # 10 GPUs; deserved 1 + 1, 8 left over split by weight 1:3 -> slices 2 and 6
        [node("n1", gpu=10)],
        [queue("q1", gpu=res(1, -1, 1), created=1), queue("q2", gpu=res(1, -1, 3), created=2)],
        [job("a", "q1", pods=10, min_member=1), job("b", "q2", pods=10, min_member=1)],
        {"q1": 3, "q2": 7},
        id="over-quota-by-weight"),
    pytest.param(
        # weights 1:1, 5 left over: slices 2.5 -> floor 2 each, remainder 1 to the older queue
        [node("n1", gpu=5)],
        [queue("q1", gpu=res(0, -1, 1), created=1), queue("q2", gpu=res(0, -1, 1), created=2)],
        [job("a", "q1", pods=5, min_member=1), job("b", "q2", pods=5, min_member=1)],
        {"q1": 3, "q2": 2},
        id="rounding-remainder-to-older-queue"),
    pytest.param(
        # q1 only asks for 1: it is satisfied in round 1, q2 gets the rest in round 2
        [node("n1", gpu=8)],
        [queue("q1", gpu=res(0, -1, 1), created=1), queue("q2", gpu=res(0, -1, 1), created=2)],
        [job("a", "q1", pods=1), job("b", "q2", pods=8, min_member=1)],
        {"q1": 1, "q2": 7},
        id="satisfied-queue-leaves-rest"),
    pytest.param(
        # priority groups: the higher priority group takes all the over-quota it requests
        [node("n1", gpu=4)],
        [queue("hi", gpu=res(0, -1, 1), priority=200, created=2), queue("lo", gpu=res(0, -1, 1), priority=100, created=1)],
        [job("a", "hi", pods=4, min_member=1), job("b", "lo", pods=4, min_member=1)],
        {"hi": 4, "lo": 0},
        id="priority-group-first"),
    pytest.param(
        # ... and only the leftover flows to the lower priority group
        [node("n1", gpu=4)],
        [queue("hi", gpu=res(0, -1, 1), priority=200, created=2), queue("lo", gpu=res(0, -1, 1), priority=100, created=1)],
        [job("a", "hi", pods=3, min_member=1), job("b", "lo", pods=4, min_member=1)],
        {"hi": 3, "lo": 1},
        id="priority-leftover-flows-down"),
    pytest.param(
        # deserved is honoured before priority: lo keeps its quota of 2
        [node("n1", gpu=4)],
        [queue("hi", gpu=res(0, -1, 1), priority=200), queue("lo", gpu=res(2, -1, 1), priority=100)],
        [job("a", "hi", pods=4, min_member=1), job("b", "lo", pods=4, min_member=1)],
        {"hi": 2, "lo": 2},
        id="deserved-before-priority"),
    pytest.param(
        # limit 2 caps q1 in round 1 (slice 4); round 2 gives q2 the 2 q1 left
        [node("n1", gpu=8)],
        [queue("q1", gpu=res(0, 2, 1), created=1), queue("q2", gpu=res(0, -1, 1), created=2)],
        [job("a", "q1", pods=8, min_member=1), job("b", "q2", pods=8, min_member=1)],
        {"q1": 2, "q2": 6},
        id="limit-caps-share"),
    pytest.param(
        # zero weight: no over-quota at all, even with idle GPUs
        [node("n1", gpu=8)],
        [queue("q1", gpu=res(1, -1, 0), created=1), queue("q2", gpu=res(2, -1, 0), created=2)],
        [job("a", "q1", pods=8, min_member=1), job("b", "q2", pods=8, min_member=1)],
        {"q1": 1, "q2": 2},
        id="zero-weight-no-over-quota"),
    pytest.param(
        # 3 levels, 10 GPUs. org (quota -1) gets min(10, 21) = 10.
        # org's children: d1 2, d2 min(2, 1) = 1; the 7 left go to d1 (d2 satisfied) -> d1 9.
        # d1's children divide 9: a 1, b 1, 7 left by weight 1:3 -> slices 1.75 / 5.25,
        # floors 1 / 5, remainder 1 to a (larger fraction .75) -> a 3, b 6. d2's child c gets 1.
        [node("n1", gpu=10)],
        [queue("org", gpu=res(-1, -1, 1)),
         queue("d1", "org", gpu=res(2, -1, 1), created=1), queue("d2", "org", gpu=res(2, -1, 1), created=2),
         queue("a", "d1", gpu=res(1, -1, 1), created=3), queue("b", "d1", gpu=res(1, -1, 3), created=4),
         queue("c", "d2", gpu=res(0, -1, 1), created=5)],
        [job("ja", "a", pods=10, min_member=1), job("jb", "b", pods=10, min_member=1), job("jc", "c", pods=1)],
        {"org": 10, "d1": 9, "d2": 1, "a": 3, "b": 6, "c": 1},
        id="three-level-tree"),
    pytest.param(
        # running pods count in the request: q1 runs 3 (request 3 + 3 pending = 6), q2 asks 6;
        # 8 GPUs, deserved 1 + 1, 6 left by equal weight -> 3 each -> 4 / 4
        [node("n1", gpu=8)],
        [queue("q1", gpu=res(1, -1, 1), created=1), queue("q2", gpu=res(1, -1, 1), created=2)],
        [job("a", "q1", pods=6, min_member=1, running=["n1"] * 3), job("b", "q2", pods=6, min_member=1)],
        {"q1": 4, "q2": 4},
        id="running-counts-in-request"),
]


@pytest.mark.parametrize("nodes,queues,jobs,expected", CASES)
def test_fair_share_matches_kai_division(tmp_path, nodes, queues, jobs, expected):
    report = run(tmp_path, nodes, queues, jobs)
    got = fair(report)
    assert {k: got[k] for k in expected} == expected


def test_over_quota_by_weight_allocates_to_fair_share(tmp_path):
    # the queue order hands out the 10 GPUs so each queue ends exactly at its fair share
    report = run(tmp_path, [node("n1", gpu=10)],
                 [queue("q1", gpu=res(1, -1, 1), created=1), queue("q2", gpu=res(1, -1, 3), created=2)],
                 [job("a", "q1", pods=10, min_member=1), job("b", "q2", pods=10, min_member=1)])
    assert allocated(report) == {"q1": 3, "q2": 7}
    assert fair(report) == {"q1": 3, "q2": 7}


def test_cpu_memory_shares_with_unlimited_quota_follow_request(tmp_path):
    # quota -1: every queue deserves what it requests (capped by capacity); units millicores / bytes
    report = run(tmp_path, [node("n1", gpu=0, cpu="10", memory="100Gi")],
                 [queue("q1", created=1), queue("q2", created=2)],
                 [job("a", "q1", pods=2, gpu=0, cpu="2", memory="1Gi", min_member=1),
                  job("b", "q2", pods=3, gpu=0, cpu="1", memory="2Gi", min_member=1)])
    assert fair(report, "cpu") == {"q1": 4000, "q2": 3000}
    assert fair(report, "memory") == {"q1": 2 * 2**30, "q2": 6 * 2**30}


def test_memory_quota_in_mb(tmp_path):
    # queue memory quota is MB (1e6 bytes): 1000 MB deserved, weight 0
    report = run(tmp_path, [node("n1", gpu=0, cpu="10", memory="100Gi")],
                 [queue("q1", memory=res(1000, -1, 0))],
                 [job("a", "q1", pods=4, gpu=0, cpu="1", memory="1Gi", min_member=1)])
    assert fair(report, "memory") == {"q1": 1_000_000_000}


# ---------------------------------------------------------------------------------------------
# capacity: ready nodes only, other schedulers' pods subtracted

def test_capacity_counts_ready_nodes_minus_other_schedulers(tmp_path):
    ssn = open_session(tmp_path, [node("n1", gpu=4), node("n2", gpu=4), node("sick", gpu=8, ready=False)],
                       [queue("q1", gpu=res(0, -1, 1))],
                       [job("mine", "q1", pods=2, running=["n1"]),
                        job("other", "q1", pods=1, gpu=3, running=["n2"], scheduler="default-scheduler"),
                        job("other-sick", "q1", pods=1, gpu=2, running=["sick"], scheduler="default-scheduler")])
    try:
        # 4 + 4 ready GPUs, minus the 3 of the other scheduler's pod on n2 (sick node ignored)
        assert ssn.shares.total[0] == 5
        # q1 requests 2 (1 running + 1 pending) and gets them
        assert ssn.shares.fair_share["q1"][0] == 2
    finally:
        ssn.close()


def test_fair_share_is_capped_by_capacity(tmp_path):
    report = run(tmp_path, [node("n1", gpu=2), node("n2", gpu=6, ready=False)],
                 [queue("q1", gpu=res(-1, -1, 1))],
                 [job("a", "q1", pods=8, min_member=1)])
    assert fair(report) == {"q1": 2}


# ---------------------------------------------------------------------------------------------
# session vectors for the reclaim code

def test_session_vectors(tmp_path):
    ssn = open_session(tmp_path, [node("n1", gpu=8)],
                       [queue("dep", gpu=res(-1, -1, 1)),
                        queue("q1", "dep", gpu=res(2, 4, 1), cpu=res(-1, -1, 1), memory=res(-1, -1, 1)),
                        queue("q2", "dep", gpu=res(1, -1, 1))],
                       [job("train", "q1", pods=2, running=["n1", "n1"], cpu="1"),
                        job("serve", "q1", pods=1, running=["n1"], priority_class="inference"),
                        job("wait", "q2", pods=2, min_member=1)])
    try:
        np.testing.assert_array_equal(ssn.shares.deserved["q1"], [2, -1, -1])
        np.testing.assert_array_equal(ssn.shares.deserved["dep"], [-1, -1, -1])
        np.testing.assert_array_equal(ssn.shares.allocated["q1"], [3, 2000, 0])
        np.testing.assert_array_equal(ssn.shares.allocated["dep"], [3, 2000, 0])
        np.testing.assert_array_equal(ssn.shares.allocated_nonpreemptible["q1"], [1, 0, 0])
        np.testing.assert_array_equal(ssn.shares.allocated_nonpreemptible["dep"], [1, 0, 0])
        np.testing.assert_array_equal(ssn.shares.request["dep"], [5, 2000, 0])
        assert ssn.shares.fair_share["q1"][0] == 3 and ssn.shares.fair_share["q2"][0] == 2
        assert ssn.shares.fair_share_of("q2")["gpu"] == 2
        assert ssn.shares.fair_share_of("nope") is None
        # allocatable share: min(limit, max(deserved, fair)); deserved -1 -> limit
        np.testing.assert_array_equal(ssn.shares.allocatable_share["q1"], [3, -1, -1])
        assert ssn.queue_order_fns and ssn.is_job_over_capacity_fns
    finally:
        ssn.close()


def test_handlers_keep_allocated_in_sync(tmp_path):
    ssn = open_session(tmp_path, [node("n1", gpu=8)],
                       [queue("dep"), queue("q1", "dep", gpu=res(2, -1, 1))],
                       [job("serve", "q1", pods=2, priority_class="inference")])
    try:
        task = next(iter(ssn.jobs["default/serve"].tasks.values()))
        view = ssn.shares.allocated["dep"]
        ssn.fire_allocate(task)
        assert view[0] == 1 and ssn.shares.allocated["q1"][0] == 1
        assert ssn.shares.allocated_nonpreemptible["dep"][0] == 1
        ssn.fire_deallocate(task)
        assert view[0] == 0 and ssn.shares.allocated_nonpreemptible["q1"][0] == 0
    finally:
        ssn.close()


# ---------------------------------------------------------------------------------------------
# kValue

@pytest.mark.parametrize("args,expected", [({}, 1.0), ({"kValue": "2.5"}, 2.5), ({"kValue": "0"}, 0.0),
                                           ({"kValue": "-3"}, 0.0), ({"kValue": "x"}, 1.0)])
def test_k_value_argument(args, expected):
    assert k_value_argument(args) == expected


def test_k_value_without_usage_does_not_change_shares(tmp_path):
    # without historical usage, shareWeight = nW * (1 + k): the proportions are the same
    nodes = [node("n1", gpu=10)]
    queues = [queue("q1", gpu=res(1, -1, 1), created=1), queue("q2", gpu=res(1, -1, 3), created=2)]
    jobs = [job("a", "q1", pods=10, min_member=1), job("b", "q2", pods=10, min_member=1)]
    for k in ("0", "1", "4"):
        assert fair(run(tmp_path, nodes, queues, jobs, proportion={"kValue": k})) == {"q1": 3, "q2": 7}
    ssn = open_session(tmp_path, nodes, queues, jobs, proportion={"kValue": "4"})
    try:
        assert next(p for p in ssn.plugins if isinstance(p, Proportion)).k_value == 4.0
    finally:
        ssn.close()


# ---------------------------------------------------------------------------------------------
# capacity checks still hold

def test_limit_blocks_over_limit_job(tmp_path):
    report = run(tmp_path, [node("n1", gpu=8)],
                 [queue("q1", gpu=res(0, 2, 1))],
                 [job("a", "q1", pods=2, running=["n1", "n1"]), job("b", "q1", pods=1)])
    assert bound(report) == []
    (unsched,) = report["cycles"][0]["unschedulable"]
    assert "OverLimit" in unsched["reasons"][0]


def test_non_preemptible_stays_in_quota(tmp_path):
    report = run(tmp_path, [node("n1", gpu=8)],
                 [queue("q1", gpu=res(1, -1, 1))],
                 [job("a", "q1", pods=1, running=["n1"], priority_class="inference"),
                  job("b", "q1", pods=1, priority_class="inference"), job("c", "q1", pods=1)])
    assert bound(report) == ["c-0"]


# ---------------------------------------------------------------------------------------------
# per-job figures kept across sessions (JobFigures): the same vectors as a walk over every job

def test_job_figures_follow_changes_as_a_fresh_walk():
    """Random cycles and changes (binds, evictions, pods and PodGroups deleted and re-created,
    a node going NotReady, GPU fractions): after each, the session opened with the kept
    figures holds the same queue vectors as one opened with an empty CycleMemory."""
    import random

    import msgspec

    from kai.api.k8s import NodeCondition
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.simulator import _advance
    from kai.sim.simulator import build_state
    from kai.sim.synthetic import mixed_cluster

    for seed in range(12):
        rng = random.Random(seed)
        state = build_state(mixed_cluster(seed, rng.randint(2, 6), rng.randint(5, 30)))
        sched = Scheduler(state, default_config())
        now = 1_704_070_800.0
        for _cycle in range(4):
            result = sched.run_cycle(RecordingCache(state), now=now)
            _advance(state, result)
            now += 1.0
            change = rng.randrange(4)
            pods = [p for p in state.pods.values() if p.job_key]
            if change == 0 and pods:
                state.delete_pod(rng.choice(pods).uid)
            elif change == 1 and state.podgroups:
                key = rng.choice(sorted(state.podgroups))
                pg = state.podgroups[key]
                state.delete_podgroup(key)
                if rng.random() < 0.5:
                    state.upsert_podgroup(pg)
            elif change == 2 and state.nodes.by_name:
                info = state.nodes.by_name[rng.choice(sorted(state.nodes.by_name))]
                node = info.node
                down = msgspec.structs.replace(node.status, conditions=[NodeCondition(type="Ready", status="False")])
                state.upsert_node(msgspec.structs.replace(node, status=down))
            kept = sched.open_session(RecordingCache(state), now)
            fresh = Scheduler(state, default_config()).open_session(RecordingCache(state), now)
            for field in ("allocated", "allocated_nonpreemptible", "request", "fair_share"):
                a, b = getattr(kept.shares, field), getattr(fresh.shares, field)
                assert a.keys() == b.keys()
                for q in a:
                    assert a[q].tolist() == b[q].tolist(), (seed, field, q)
            assert kept.shares.total.tolist() == fresh.shares.total.tolist()
            kept.close()
            fresh.close()


def test_lone_pending_figures_are_the_full_walks():
    """The shortcut for a job of one pending pod gives ``_job_figures``' tuple, value for
    value, and declines every other job; the init requests it hands to the queue order are
    those the order makes itself."""
    import random

    from kai.api.constants import PodStatus
    from kai.config import default_config
    from kai.plugins.queue_order import QueueOrder
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.simulator import build_state
    from kai.sim.synthetic import mixed_cluster

    checked = 0
    for seed in range(10):
        rng = random.Random(seed)
        state = build_state(mixed_cluster(seed, rng.randint(2, 6), rng.randint(5, 40)))
        ssn = Scheduler(state, default_config()).open_session(RecordingCache(state), 1_704_070_800.0)
        plugin = next(p for p in ssn.plugins if isinstance(p, Proportion))
        nodes = state.nodes
        ready = nodes.in_use.astype(bool) & ~nodes.not_ready.astype(bool)
        fresh = QueueOrder(plugin, ssn.task_order_key, ssn.podset_order_key)    # nothing handed in
        assert fresh._req == {}
        handed = dict(plugin.order._req)                 # before any placement: as handed in
        assert handed
        for key, req in handed.items():
            assert req == fresh.init_request(ssn.jobs[key]), key
        for job in ssn.jobs.values():
            got = plugin._lone_pending_figures(job)
            tasks = list(job.tasks.values())
            lone = len(tasks) == 1 and tasks[0].status == PodStatus.PENDING and tasks[0].gpu_sharing is None
            assert (got is not None) == lone
            if got is not None:
                checked += 1
                assert got == plugin._job_figures(job, ready, nodes.by_name, plugin.mig_cols)
        ssn.close()
    assert checked


def test_job_figures_belong_to_their_state_not_its_address():
    """JobFigures kept in the Scheduler's memory hold their state weakly, not by ``id``: a
    state made after the first is gone often sits at the same address (its epoch and node
    key alike) and must not be handed the gone state's figures."""
    from kai.cache.cluster_state import ClusterState
    from kai.plugins.proportion import JobFigures
    kept: list = []                        # (memory, the address its state had)
    for _ in range(500):                   # states made and dropped until CPython reuses an address
        state = ClusterState()
        reused = any(gone == id(state) for _, gone in kept)
        assert not any(m.valid_for(state, ()) for m, _ in kept)
        kept.append((JobFigures(state, ()), id(state)))
        assert kept[-1][0].valid_for(state, ())
        del state
        gc.collect()                       # (a ClusterState holds reference cycles)
        if reused:
            break
    assert reused                          # a later state took the address: the case was exercised


# ---------------------------------------------------------------------------------------------
# the capacity check and the reclaim gate: compiled / scalar paths = the plain readings

def _capacity_session(tmp_path, seed: int):
    import random
    rng = random.Random(seed)
    nodes = [node(f"n{i}", gpu=8) for i in range(4)]
    queues = [queue("dep-a", gpu=res(rng.choice([-1, 4, 8]), rng.choice([-1, 6, 12]), 1)),
              queue("dep-b", gpu=res(rng.choice([-1, 2]), rng.choice([-1, 3]), 1), cpu=res(-1, rng.choice([-1, 3000]), 1))]
    jobs = []
    for k in range(6):
        parent = "dep-a" if k % 2 else "dep-b"
        quota, limit = rng.choice([-1, 0, 1, 2, 3]), rng.choice([-1, 1, 2, 4])
        queues.append(queue(f"q{k}", parent, gpu=res(quota, limit, 1),
                            cpu=res(-1, rng.choice([-1, 1000, 4000]), 1)))
        running = rng.randint(0, 3)
        jobs.append(job(f"run{k}", f"q{k}", pods=running, running=[f"n{k % 4}"] * running, cpu="1",
                        priority_class=rng.choice(["train", "inference"])))
        for j in range(3):
            jobs.append(job(f"wait{k}-{j}", f"q{k}", pods=rng.randint(1, 3), gpu=rng.choice([0, 1, 2]),
                            cpu=rng.choice(["1", "2"]), priority_class=rng.choice(["train", "inference"])))
    return open_session(tmp_path, nodes, queues, jobs)


def test_capacity_check_compiled_is_the_python_check(tmp_path):
    """Proportion.over_capacity through kai._fast.queueview.first_over gives the refusal (and
    its text) of the row-by-row Python check, for every pending job of random clusters."""
    seen = set()
    for seed in range(16):
        _compare_capacity_checks(tmp_path, seed, seen)
    assert {"", "OverLimit", "NonPreemptibleOverQuota"} <= seen


def _compare_capacity_checks(tmp_path, seed, seen):
    ssn = _capacity_session(tmp_path, seed)
    try:
        p = next(p for p in ssn.plugins if isinstance(p, Proportion))
        assert p.order.rows is not None and p.order.rows.limit is p.limit
        for j in ssn.jobs.values():
            tasks = j.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
            if not tasks:
                continue
            compiled = p.over_capacity(j, tasks)
            rows, p.order.rows = p.order.rows, None
            try:
                plain = p.over_capacity(j, tasks)
            finally:
                p.order.rows = rows
            assert compiled == plain
            seen.add((compiled or "").split(":")[0])
    finally:
        ssn.close()


def test_reclaim_gate_is_its_vector_reading(tmp_path):
    """can_reclaim (scalar) = allocated + request <= fair share in every resource and, for a
    non-preemptible job, non-preemptible allocated + request <= deserved (1e-9 tolerance, -1
    unlimited), computed with numpy vectors as the gate's documentation reads."""
    answers = set()
    for seed in range(16):
        _compare_gate(tmp_path, seed, answers)
    assert answers == {True, False}


def _compare_gate(tmp_path, seed, answers):
    ssn = _capacity_session(tmp_path, seed)
    try:
        p = next(p for p in ssn.plugins if isinstance(p, Proportion))
        gate = ssn.can_reclaim_fns[0]
        shares = ssn.shares

        def vec(v):
            return np.array([np.inf if x == -1 else float(x) for x in v])

        for j in ssn.jobs.values():
            tasks = j.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
            if not tasks:
                continue
            req = sum((p.quota_vector(t) for t in tasks), np.zeros(3))
            want = bool((shares.allocated[j.queue] + req <= vec(shares.fair_share[j.queue]) + 1e-9).all())
            if want and not j.preemptible:
                want = bool((shares.allocated_nonpreemptible[j.queue] + req
                             <= vec(ssn.queues.get(j.queue).deserved) + 1e-9).all())
            assert gate(ssn, j, tasks) is want
            answers.add(want)
    finally:
        ssn.close()
