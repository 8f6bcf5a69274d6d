"""Scheduling signatures (kai.actions.common.minimal_job): KAI's comparison, the skip it
allows, and that the skipped jobs would have failed anyway."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from victim_scenarios import config, evicted, job, manifests, node, pipelined, queue

from kai.actions.common import minimal_job
from kai.actions.common.minimal_job import MinimalJobRepresentatives, easier_than, footprint_smaller
from kai.actions.common.solver import JobSolver
from kai.api import constants as C
from kai.sim.simulator import simulate

from victim_scenarios import START  # noqa: E402


def _job(key, *reqs, running=0):
    tasks = {f"{key}-{i}": SimpleNamespace(status=C.PodStatus.PENDING, req=np.array(r, dtype=float))
             for i, r in enumerate(reqs)}
    for i in range(running):
        tasks[f"{key}-r{i}"] = SimpleNamespace(status=C.PodStatus.RUNNING, req=np.array([9.0, 9.0]))
    return SimpleNamespace(key=key, tasks=tasks)


# (id, job, representative, easier_than, footprint_smaller)
COMPARISONS = [
    ("same-pods", _job("a", [1, 1]), _job("r", [1, 1]), False, True),
    ("fewer-pods-is-easier", _job("a", [4, 4]), _job("r", [1, 1], [1, 1]), True, False),
    ("more-pods-is-not-easier", _job("a", [1, 1], [1, 1]), _job("r", [1, 1]), False, False),
    ("smaller-pod-is-easier", _job("a", [1, 1]), _job("r", [2, 1]), True, True),
    ("larger-pod-is-not-easier", _job("a", [2, 1]), _job("r", [1, 1]), False, False),
    ("incomparable-pod-is-not-easier", _job("a", [2, 0]), _job("r", [1, 1]), False, False),
    ("running-pods-do-not-count", _job("a", [1, 1], running=3), _job("r", [1, 1]), False, True),
    ("no-pending-pods", _job("a"), _job("r", [1, 1]), False, False),
]


@pytest.mark.parametrize("mine,rep,easier,smaller", [c[1:] for c in COMPARISONS], ids=[c[0] for c in COMPARISONS])
def test_kai_comparison(mine, rep, easier, smaller):
    assert easier_than(mine, rep) is easier
    assert footprint_smaller(mine, rep) is smaller


def test_representative_is_the_smallest_failed_job(monkeypatch):
    monkeypatch.setattr(minimal_job, "job_signature", lambda j: b"same")
    reps = MinimalJobRepresentatives()
    big, small = _job("big", [4, 4]), _job("small", [1, 1])
    reps.failed(big)
    reps.failed(small)
    assert reps.reps[b"same"] is small
    reps.failed(big)                        # a larger failure does not replace it
    assert reps.reps[b"same"] is small
    assert reps.skip(_job("again", [1, 1])) is small
    assert reps.skip(_job("tiny", [0.5, 1])) is None


def _cluster(n_waiting, gpu=4):
    # q2 holds the only node over its quota, but its pods started 10 s ago and q2's
    # reclaimMinRuntime is 1h: reclaim looks for victims for q1 and finds none
    return ([node("n1", gpu=4)], [queue("q1", gpu_quota=4), queue("q2", gpu_quota=0, reclaim_min_runtime="1h")],
            [job("hog", "q2", pods=4, running=["n1"] * 4, last_start=-10, created=1)]
            + [job(f"w{i}", "q1", pods=1, gpu=gpu, created=10 + i) for i in range(n_waiting)])


@pytest.mark.parametrize("signatures,tries", [(True, 1), (False, 5)])
def test_identical_jobs_after_a_failure_are_skipped(monkeypatch, signatures, tries):
    calls = []
    real = JobSolver.solve
    monkeypatch.setattr(JobSolver, "solve", lambda self, j, *a, **kw: calls.append(j.key) or real(self, j, *a, **kw))
    cfg = config("reclaim")
    cfg.use_scheduling_signatures = signatures
    r = simulate(manifests(*_cluster(5, gpu=1)), cfg, start_time=START)
    assert evicted(r) == [] and len(calls) == tries


def test_a_different_constraint_is_not_skipped(monkeypatch):
    calls = []
    real = JobSolver.solve
    monkeypatch.setattr(JobSolver, "solve", lambda self, j, *a, **kw: calls.append(j.key) or real(self, j, *a, **kw))
    nodes, queues, jobs = _cluster(2, gpu=1)
    jobs[-1][1]["spec"]["nodeSelector"] = {"zone": "a"}       # w1's pod: another signature
    cfg = config("reclaim")
    simulate(manifests(nodes, queues, jobs), cfg, start_time=START)
    assert calls == ["default/w0", "default/w1"]


job_spec = st.tuples(st.sampled_from(["q1", "q2", "q3"]), st.integers(1, 3), st.sampled_from([1, 2, 4]),
                     st.sampled_from(["train", "build"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(running=st.lists(job_spec, min_size=1, max_size=5), waiting=st.lists(job_spec, min_size=1, max_size=6),
       n_nodes=st.integers(1, 3))
def test_signatures_change_no_decision(running, waiting, n_nodes):
    """A job skipped for its signature would have failed: reclaim, preempt and consolidation
    decide the same with and without signatures."""
    nodes = [node(f"n{i}", gpu=4) for i in range(n_nodes)]
    queues = [queue("q1", gpu_quota=4), queue("q2", gpu_quota=2), queue("q3", gpu_quota=0)]
    free = {f"n{i}": 4 for i in range(n_nodes)}
    jobs = []
    for k, (q, pods, gpu, prio) in enumerate(running):
        where = max(free, key=free.get)              # a running job sits on one node
        if free[where] < pods * gpu:
            continue
        free[where] -= pods * gpu
        jobs.append(job(f"r{k}", q, pods=pods, gpu=gpu, priority_class=prio, running=[where] * pods, created=k))
    for k, (q, pods, gpu, prio) in enumerate(waiting):
        jobs.append(job(f"w{k}", q, pods=pods, gpu=gpu, priority_class=prio, created=100 + k))
    out = []
    for signatures in (True, False):
        cfg = config("consolidation, reclaim, preempt")
        cfg.use_scheduling_signatures = signatures
        r = simulate(manifests(nodes, queues, jobs), cfg, start_time=START)
        out.append((evicted(r), pipelined(r)))
    assert out[0] == out[1]
