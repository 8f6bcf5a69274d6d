"""Session: the queue tree it opens with (``--full-hierarchy-fairness``)."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "actions"))

from kai.api import constants as C  # noqa: E402
from scenario_builder import bindings, config, job, node, queue, simulate_docs, unschedulable  # noqa: E402


def _docs():
    # d1 may use 2 GPUs, its project p1 unlimited; d2 holds the rest of the quota
    return [node("n1", gpu=8),
            queue("d1", gpu=(2, 2)), queue("p1", parent="d1"),
            queue("d2", gpu=(6, -1)), queue("p2", parent="d2"),
            [job(f"j{i}", queue="p1", gpu=1, created=f"2024-01-01T00:00:0{i}Z") for i in range(6)]]


def test_full_hierarchy_keeps_department_limits():
    report = simulate_docs(_docs(), config(actions=["allocate"]))
    assert len(bindings(report)) == 2
    assert all(why.startswith("OverLimit: queue 'd1'") for why in unschedulable(report).values())


def test_project_level_fairness_drops_departments():
    cfg = config(actions=["allocate"])
    cfg.full_hierarchy_fairness = False
    report = simulate_docs(_docs(), cfg)
    assert len(bindings(report)) == 6             # d1's limit no longer binds p1
    tree = {q["name"]: q["parent"] for q in report["queues"]}
    assert tree == {"default": None, "p1": "default", "p2": "default"}


def test_project_level_fairness_job_in_a_department_queue_waits():
    cfg = config(actions=["allocate"])
    cfg.full_hierarchy_fairness = False
    report = simulate_docs([node("n1", gpu=8), queue("d1"), queue("p1", parent="d1"),
                            job("top", queue="d1", gpu=1)], cfg)
    assert bindings(report) == {}
    assert "queue 'd1'" in unschedulable(report)["default/top"]


# ---------------------------------------------------------------------------- job order keys
def _order_state():
    from kai.cache.cluster_state import ClusterState
    from kai.sim.synthetic import make_pod, open_queue, synthetic_nodes
    from kai.api.k8s import ObjectMeta, PodGroup, PodGroupSpec
    pgs, pods = [], []
    for name, prio in (("a", "train"), ("b", "build"), ("c", "train")):
        pgs.append(PodGroup(metadata=ObjectMeta(name=name, namespace="ns", uid=f"uid-{name}"),
                            spec=PodGroupSpec(min_member=1, queue="q", priority_class_name=prio)))
        pods.append(make_pod(f"{name}-0", "ns", name, 1))
    state = ClusterState()
    state.load(synthetic_nodes(1, seed=1), pgs, pods, queues=[open_queue("root"), open_queue("q", "root")])
    return state


def _fresh_keys(ssn):
    return {k: tuple([fn(j) for fn in ssn.job_order_keys]) + (j.creation, j.uid) for k, j in ssn.jobs.items()}


def test_job_order_keys_are_kept_across_sessions_until_the_job_changes():
    from kai.api.k8s import ObjectMeta, PriorityClass
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    state = _order_state()
    sched = Scheduler(state, default_config())
    ssn = sched.open_session(RecordingCache(state))
    first = {k: ssn.job_order_key(j) for k, j in ssn.jobs.items()}
    assert first == _fresh_keys(ssn)
    ssn.close()
    # a PriorityClass change re-prioritises job c's class: its key must follow
    state.upsert_priority_class(PriorityClass(metadata=ObjectMeta(name="train"), value=500))
    ssn = sched.open_session(RecordingCache(state))
    again = {k: ssn.job_order_key(j) for k, j in ssn.jobs.items()}
    assert again == _fresh_keys(ssn) and again["ns/a"] != first["ns/a"]
    # the next session's keys come from the memo, and equal fresh ones
    ssn.close()
    ssn = sched.open_session(RecordingCache(state))
    kept = sched.memory.order_keys.keys
    assert set(kept) >= set(again)
    assert {k: ssn.job_order_key(j) for k, j in ssn.jobs.items()} == _fresh_keys(ssn)


def test_a_job_the_session_touched_gets_a_fresh_key():
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    state = _order_state()
    sched = Scheduler(state, default_config())
    ssn = sched.open_session(RecordingCache(state))
    job = ssn.jobs["ns/a"]
    before = ssn.job_order_key(job)
    task = job.lone_task()
    task.status = C.PodStatus.ALLOCATED           # what a Statement operation does, with its event
    ssn.touched_jobs.add(job.key)
    try:
        assert ssn.job_order_key(job) != before == sched.memory.order_keys.keys["ns/a"]
    finally:
        task.status = C.PodStatus.PENDING
    ssn.close()


def test_a_new_config_starts_a_new_memo():
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    state = _order_state()
    sched = Scheduler(state, default_config())
    sched.open_session(RecordingCache(state)).job_order_key(state.jobs["ns/a"])
    memo = sched.memory.order_keys
    sched.config = default_config()
    ssn = sched.open_session(RecordingCache(state))
    ssn.job_order_key(state.jobs["ns/a"])
    assert sched.memory.order_keys is not memo


def test_a_closed_session_leaves_no_cyclic_garbage():
    """Plugins' hooks close over the session; close() cuts those cycles and drops the
    per-task memos, so reference counting frees a cycle's work at once (the cyclic collector,
    paused during cycles, would otherwise rescan it all)."""
    import gc
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    from tests.actions.common.test_lookalike import _backlog
    state = _backlog(7)
    sched = Scheduler(state, default_config())
    sched.run_cycle(RecordingCache(state))                 # imports, first-use caches
    gc.collect()
    for _ in range(2):
        sched.run_cycle(RecordingCache(state))
        assert gc.collect() == 0


def test_the_queue_tree_is_kept_while_the_queues_are_the_same_objects():
    """session_queue_tree: the same Queue objects give the same (read-only) tree; a Queue put
    in anew (the informer's update), a queue added or gone, or the other fairness mode gives a
    tree built afresh, with its figures and problems."""
    import msgspec

    from kai.api.queue_info import PROJECT_LEVEL_ROOT
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    from tests.actions.common.test_lookalike import _backlog, _queue
    state = _backlog(7)
    sched = Scheduler(state, default_config())

    def tree():
        ssn = sched.open_session(RecordingCache(state))
        ssn.close()
        return ssn.queues

    first = tree()
    assert tree() is first
    q0 = state.queues["q0"]
    state.upsert_queue(_queue("q0", q0.spec.parent_queue, 1, 7))
    changed = tree()
    assert changed is not first and changed.get("q0").limit[0] == 7.0
    assert tree() is changed
    state.upsert_queue(_queue("orphan", "nowhere", 1, -1))
    with_orphan = tree()
    assert "orphan" not in with_orphan and "does not exist" in with_orphan.problems["orphan"]
    assert tree() is with_orphan and tree().problems == with_orphan.problems
    state.delete_queue("orphan")
    assert "orphan" not in tree().problems
    sched.config = cfg = default_config()
    cfg.full_hierarchy_fairness = False
    flat = tree()
    assert "root" not in flat and flat.get("q0").parent == PROJECT_LEVEL_ROOT
    assert tree() is flat
    # an edited copy of the same name is a different object: never served the old tree
    state.upsert_queue(msgspec.structs.replace(state.queues["q0"]))
    assert tree() is not flat


def test_events_log_their_queue_and_the_default_order_is_path_local():
    """fire_allocate / fire_deallocate / fire_pipelined name the event's queue in
    ``event_queues`` (what a path-local job walk re-asks); the proportion plugin's queue
    order declares itself path-local, and one more order fn that does not makes it not."""
    from kai.actions.common.job_order import path_local_fn
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    from tests.actions.common.test_lookalike import _backlog
    state = _backlog(11)
    ssn = Scheduler(state, default_config()).open_session(RecordingCache(state))
    try:
        job = next(j for j in ssn.jobs.values() if j.has_pending())
        task = next(iter(job.tasks.values()))
        before = ssn.alloc_events
        ssn.fire_allocate(task)
        ssn.fire_deallocate(task)
        ssn.fire_pipelined(task)
        assert ssn.event_queues[-3:] == [job.queue] * 3 and ssn.alloc_events == before + 3
        task.job_key, key = "ns/no-such-job", task.job_key
        try:
            ssn.fire_pipelined(task)
        finally:
            task.job_key = key
        assert ssn.event_queues[-1] is None
        assert path_local_fn(ssn) is True
        ssn.queue_order_fns.append(lambda lq, rq, lj, rj: 0)
        assert path_local_fn(ssn) is False
    finally:
        ssn.close()
