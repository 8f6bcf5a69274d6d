"""kai.framework.statement: virtual ops, exact undo, ordered commit, convert_to_pipelined."""
import msgspec
import numpy as np
import pytest

from kai.api import constants as C
from kai.api.k8s import Node, Pod, PodGroup, Queue
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.framework.predicate import PIPELINE_ONLY
from kai.framework.statement import ALLOCATE, EVICT, PIPELINE, Statement
from kai.scheduler import Scheduler

S = C.PodStatus


class SpyCache:
    def __init__(self):
        self.calls = []

    def bind(self, task, node):
        self.calls.append(("bind", task.key, node))

    def pipeline(self, task, node):
        self.calls.append(("pipeline", task.key, node))

    def evict(self, task, action, preemptor=""):
        self.calls.append(("evict", task.key, action, preemptor))


def _node(name, cpu="7333m", gpu=4):
    return msgspec.convert({"metadata": {"name": name},
                            "status": {"allocatable": {"cpu": cpu, "memory": "10000001", "pods": 7,
                                                       "nvidia.com/gpu": gpu}}}, Node)


def _pod(name, group, cpu="333m", gpu=1, node="", deleting=False):
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "annotations": {"pod-group-name": group}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return msgspec.convert({"metadata": meta,
                            "spec": {"schedulerName": "kai-scheduler", "nodeName": node,
                                     "containers": [{"name": "c", "resources": {"requests": {
                                         "cpu": cpu, "memory": "1234567", "nvidia.com/gpu": gpu}}}]},
                            "status": {"phase": "Running" if node else "Pending"}}, Pod)


def _pg(name, min_member=1):
    return msgspec.convert({"metadata": {"name": name, "namespace": "ns"},
                            "spec": {"minMember": min_member, "queue": "q", "priorityClassName": "train"}},
                           PodGroup)


def _queue():
    return msgspec.convert({"metadata": {"name": "q"},
                            "spec": {"resources": {k: {"quota": -1, "limit": -1} for k in ("gpu", "cpu", "memory")}}},
                           Queue)


@pytest.fixture
def ssn():
    st = ClusterState()
    for n in ("n0", "n1", "n2"):
        st.upsert_node(_node(n))
    st.upsert_queue(_queue())
    st.upsert_podgroup(_pg("run"))
    st.upsert_podgroup(_pg("pend", min_member=3))
    st.upsert_podgroup(_pg("other"))
    st.upsert_pod(_pod("run-0", "run", node="n0"))
    st.upsert_pod(_pod("run-1", "run", cpu="1", node="n1"))
    st.upsert_pod(_pod("gone-0", "run", node="n2", deleting=True))
    for i in range(5):
        st.upsert_pod(_pod(f"pend-{i}", "pend"))
    st.upsert_pod(_pod("other-0", "other", cpu="1", gpu=2))
    s = Scheduler(st, default_config()).open_session(SpyCache(), now=1000.0)
    yield s
    s.close()


def snap(ssn):
    return (ssn.idle.copy(), ssn.releasing.copy(), ssn.avail.copy())


def assert_same(ssn, before):
    for a, b in zip((ssn.idle, ssn.releasing, ssn.avail), before):
        assert np.array_equal(a, b)
        assert a.tobytes() == b.tobytes()          # bit for bit, not just close


def tasks(ssn, job):
    return sorted(ssn.jobs[f"ns/{job}"].tasks.values(), key=lambda t: t.name)


def mask(ssn, *names):
    m = np.zeros(ssn.idle.shape[1], dtype=np.uint8)
    for n in names or ("n0", "n1", "n2"):
        m[ssn.state.nodes.by_name[n].idx] = 1
    return m


def statuses(ssn):
    return {t.key: (t.status, t.node_name) for j in ssn.jobs.values() for t in j.tasks.values()}


def test_allocate_run_then_discard_restores_exactly(ssn):
    before, st_before = snap(ssn), statuses(ssn)
    alloc_before = {k: v.copy() for k, v in ssn.shares.allocated.items()}
    stmt = Statement(ssn)
    placed = stmt.allocate_run(tasks(ssn, "pend"), mask(ssn), None)
    assert placed == 5
    assert all(t.status in (S.ALLOCATED, S.PIPELINED) and t.node_name for t in tasks(ssn, "pend"))
    assert not np.array_equal(ssn.idle, before[0])
    assert ssn.shares.allocated["q"][0] > alloc_before["q"][0] - 1e-9
    stmt.discard()
    assert_same(ssn, before)
    assert statuses(ssn) == st_before
    assert len(stmt) == 0
    for k in alloc_before:
        assert np.allclose(ssn.shares.allocated[k], alloc_before[k])


def test_run_stops_when_nothing_fits(ssn):
    stmt = Statement(ssn)
    # n0 only: 4 gpus, one used by run-0 -> 3 fit without pipelining
    placed = stmt.allocate_run(tasks(ssn, "pend"), mask(ssn, "n0"), None, allow_pipeline=False)
    assert placed == 3
    assert [t.status for t in tasks(ssn, "pend")] == [S.ALLOCATED] * 3 + [S.PENDING] * 2
    stmt.discard()


def test_pipelined_when_only_releasing_fits(ssn):
    before = snap(ssn)
    stmt = Statement(ssn)
    placed = stmt.allocate_run(tasks(ssn, "other"), mask(ssn, "n2"), None)
    # n2: 4 gpus, 1 releasing -> 3 idle; request 2 fits idle
    assert placed == 1 and tasks(ssn, "other")[0].status == S.ALLOCATED
    stmt.discard()
    assert_same(ssn, before)


def test_evict_then_discard_restores_exactly(ssn):
    before, st_before = snap(ssn), statuses(ssn)
    stmt = Statement(ssn)
    victim = tasks(ssn, "run")[1]            # run-0 on n0
    i = ssn.state.nodes.by_name["n0"].idx
    stmt.evict(victim, "reclaim", "ns/pend")
    assert victim.status == S.RELEASING
    assert ssn.releasing[2, i] == before[1][2, i] + 1
    assert np.array_equal(ssn.avail, ssn.idle + ssn.releasing)
    stmt.discard()
    assert_same(ssn, before)
    assert statuses(ssn) == st_before


def test_evict_unknown_node_raises(ssn):
    t = tasks(ssn, "pend")[0]
    with pytest.raises(ValueError):
        Statement(ssn).evict(t, "preempt")


def test_mixed_sequence_checkpoints_and_rollback(ssn):
    before = snap(ssn)
    stmt = Statement(ssn)
    stmt.evict(tasks(ssn, "run")[1], "preempt")
    cp1 = stmt.checkpoint()
    at_cp1 = snap(ssn), statuses(ssn)
    stmt.allocate_run(tasks(ssn, "pend")[:2], mask(ssn, "n0"), None)
    stmt.allocate_run(tasks(ssn, "other"), mask(ssn), np.array([0.0, 5.0, 0.0]))
    stmt.evict(tasks(ssn, "run")[2], "preempt")
    cp2 = stmt.checkpoint()
    at_cp2 = snap(ssn), statuses(ssn)
    stmt.allocate_run(tasks(ssn, "pend")[2:], mask(ssn), None)
    stmt.rollback(cp2)
    assert_same(ssn, at_cp2[0])
    assert statuses(ssn) == at_cp2[1]
    stmt.rollback(cp1)
    assert_same(ssn, at_cp1[0])
    assert statuses(ssn) == at_cp1[1]
    stmt.discard()
    assert_same(ssn, before)


def test_random_sequences_discard_bit_for_bit(ssn):
    rng = np.random.default_rng(11)
    before, st_before = snap(ssn), statuses(ssn)
    for _round in range(20):
        stmt = Statement(ssn)
        for _ in range(rng.integers(1, 8)):
            r = rng.random()
            pending = [t for t in tasks(ssn, "pend") + tasks(ssn, "other") if t.status == S.PENDING]
            on_node = [t for j in ("run", "pend", "other") for t in tasks(ssn, j)
                       if t.status in (S.RUNNING, S.ALLOCATED, S.PIPELINED) and t.node_name]
            if r < 0.5 and pending:
                k = int(rng.integers(1, len(pending) + 1))
                nodes = [n for n in ("n0", "n1", "n2") if rng.random() < 0.7] or ["n1"]
                stmt.allocate_run(pending[:k], mask(ssn, *nodes), None, bool(rng.random() < 0.5))
            elif r < 0.8 and on_node:
                stmt.evict(on_node[int(rng.integers(len(on_node)))], "preempt")
            elif len(stmt):
                stmt.rollback(int(rng.integers(0, len(stmt) + 1)))
            assert np.array_equal(ssn.avail, ssn.idle + ssn.releasing)
        stmt.discard()
        assert_same(ssn, before)
        assert statuses(ssn) == st_before


def test_commit_sends_ops_in_order(ssn):
    stmt = Statement(ssn)
    stmt.evict(tasks(ssn, "run")[1], "reclaim", "ns/other")
    stmt.allocate_run(tasks(ssn, "other"), mask(ssn, "n1"), None)
    stmt.allocate_run(tasks(ssn, "pend")[:1], mask(ssn, "n0"), None)
    kinds = [op.kind for op in stmt.ops]
    assert kinds[0] == EVICT
    stmt.commit()
    calls = ssn.cache.calls
    assert calls[0] == ("evict", "ns/run-0", "reclaim", "ns/other")
    assert calls[1] == ("bind", "ns/other-0", "n1")
    assert calls[2][0] in ("bind", "pipeline") and calls[2][1] == "ns/pend-0" and calls[2][2] == "n0"
    assert len(calls) == 3 and len(stmt) == 0
    assert not any(t.is_virtual for t in tasks(ssn, "other"))


def test_convert_to_pipelined(ssn):
    stmt = Statement(ssn)
    stmt.allocate_run(tasks(ssn, "pend")[:2], mask(ssn, "n1"), None)
    stmt.allocate_run(tasks(ssn, "other"), mask(ssn, "n0"), None)
    assert [op.kind for op in stmt.ops] == [ALLOCATE, ALLOCATE, ALLOCATE]
    stmt.convert_to_pipelined("ns/pend")
    assert [op.kind for op in stmt.ops] == [PIPELINE, PIPELINE, ALLOCATE]
    assert [t.status for t in tasks(ssn, "pend")[:2]] == [S.PIPELINED, S.PIPELINED]
    assert tasks(ssn, "other")[0].status == S.ALLOCATED
    stmt.commit()
    assert [c[0] for c in ssn.cache.calls] == ["pipeline", "pipeline", "bind"]
    # closing the session returns virtual pipelines to Pending
    assert len(ssn.pipelined) == 2
    ssn.close()
    assert [(t.status, t.node_name) for t in tasks(ssn, "pend")[:2]] == [(S.PENDING, "")] * 2


def test_convert_then_discard_restores(ssn):
    before, st_before = snap(ssn), statuses(ssn)
    stmt = Statement(ssn)
    stmt.allocate_run(tasks(ssn, "pend")[:3], mask(ssn), None)
    stmt.convert_to_pipelined("ns/pend")
    stmt.discard()
    assert_same(ssn, before)
    assert statuses(ssn) == st_before


def test_evicting_own_pipelined_task_frees_idle(ssn):
    stmt = Statement(ssn)
    i = ssn.state.nodes.by_name["n2"].idx
    idle0, rel0 = ssn.idle[:, i].copy(), ssn.releasing[:, i].copy()
    # n2 has 3 idle gpus and 1 releasing: the 4th gpu task is pipelined
    stmt.allocate_run(tasks(ssn, "pend")[:4], mask(ssn, "n2"), None)
    piped = [t for t in tasks(ssn, "pend") if t.status == S.PIPELINED]
    assert len(piped) == 1
    assert ssn.releasing[2, i] == rel0[2] - 1 and ssn.idle[2, i] == idle0[2] - 3
    stmt.evict(piped[0], "consolidation")
    assert piped[0].status == S.PENDING
    # the GPU it was waiting for is still held by the terminating pod: back to releasing, not idle
    assert ssn.releasing[2, i] == rel0[2]
    assert ssn.idle[2, i] == idle0[2] - 3
    assert np.array_equal(ssn.avail, ssn.idle + ssn.releasing)
    # so nothing can be bound (only pipelined) onto it
    other = tasks(ssn, "pend")[4]
    stmt.allocate_run([other], mask(ssn, "n2"), None, allow_pipeline=False)
    assert other.status == S.PENDING
    stmt.discard()
    assert np.array_equal(ssn.idle[:, i], idle0) and np.array_equal(ssn.releasing[:, i], rel0)


def test_session_copies_arrays_from_state(ssn):
    t = ssn.state.nodes
    before = t.idle.copy()
    stmt = Statement(ssn)
    stmt.allocate_run(tasks(ssn, "pend")[:1], mask(ssn), None)
    assert np.array_equal(t.idle, before)       # the cache only changes on commit
    stmt.commit()
    assert ssn.cache.calls == [("bind", "ns/pend-0", tasks(ssn, "pend")[0].node_name)]


# ------------------------------------------------------------------ handler answers
def _answering(ssn, answers: dict):
    """An allocate handler answering per task key; returns the (event, key) log of it and its
    matching deallocate handler (a handler that refused treats the deallocate as a no-op)."""
    log = []
    refused = set()

    def on_alloc(t):
        why = answers.get(t.key)
        log.append(("alloc", t.key))
        if why and why != PIPELINE_ONLY:
            refused.add(t.key)
        return why

    def on_dealloc(t):
        log.append(("dealloc", t.key))
        refused.discard(t.key)

    ssn.allocate_handlers.append(on_alloc)
    ssn.deallocate_handlers.append(on_dealloc)
    return log


def test_a_refused_placement_is_undone_with_the_rest_of_its_run(ssn):
    before, st_before = snap(ssn), statuses(ssn)
    alloc_before = {k: v.copy() for k, v in ssn.shares.allocated.items()}
    pend = tasks(ssn, "pend")
    log = _answering(ssn, {pend[2].key: "no devices left"})
    stmt = Statement(ssn)
    placed = stmt.allocate_run(pend, mask(ssn), None)
    assert placed == 2
    assert [t.status for t in pend] == [S.ALLOCATED] * 2 + [S.PENDING] * 3
    assert len(stmt) == 2 and ("dealloc", pend[2].key) in log          # the refused one was undone
    assert not any(k == pend[3].key for _, k in log)                   # no handler saw the later ones
    stmt.discard()
    assert_same(ssn, before)                                           # kernel placements undone too
    assert statuses(ssn) == st_before
    for k in alloc_before:                                             # proportion's handlers balanced
        assert np.allclose(ssn.shares.allocated[k], alloc_before[k])


def test_pipeline_only_turns_an_allocation_into_a_pipeline(ssn):
    pend = tasks(ssn, "pend")
    _answering(ssn, {pend[0].key: PIPELINE_ONLY})
    stmt = Statement(ssn)
    assert stmt.allocate_run(pend[:2], mask(ssn, "n1"), None) == 2
    assert [t.status for t in pend[:2]] == [S.PIPELINED, S.ALLOCATED]
    assert [op.kind for op in stmt.ops] == [PIPELINE, ALLOCATE]
    stmt.commit()
    assert [c[0] for c in ssn.cache.calls] == ["pipeline", "bind"]


def test_pipeline_only_where_pipelining_is_not_allowed_is_a_refusal(ssn):
    before = snap(ssn)
    pend = tasks(ssn, "pend")
    _answering(ssn, {pend[0].key: PIPELINE_ONLY})
    stmt = Statement(ssn)
    assert stmt.allocate_run(pend[:2], mask(ssn, "n1"), None, allow_pipeline=False) == 0
    assert pend[0].status == S.PENDING and len(stmt) == 0
    assert_same(ssn, before)


# --------------------------------------------------------------------------- allocate_one
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

_SHAPES = [("1", 1), ("2", 1), ("500m", 0), ("3", 2), ("1", 4)]


def _lone_session(node_specs, pods, refuse):
    """A session over nodes (cpu cores, gpus, releasing gpus) and single-pod jobs of the given
    shapes; ``refuse``: pod names an allocate handler refuses."""
    st = ClusterState()
    st.upsert_queue(_queue())
    for i, (cpu, gpu, rel) in enumerate(node_specs):
        st.upsert_node(_node(f"n{i}", cpu=str(cpu), gpu=gpu))
        for k in range(rel):                        # a terminating pod holding one GPU
            st.upsert_podgroup(_pg(f"gone-{i}-{k}"))
            st.upsert_pod(_pod(f"gone-{i}-{k}", f"gone-{i}-{k}", cpu="100m", gpu=min(gpu, 1), node=f"n{i}",
                               deleting=True))
    for j, shape in enumerate(pods):
        cpu, gpu = _SHAPES[shape]
        st.upsert_podgroup(_pg(f"p{j}"))
        st.upsert_pod(_pod(f"p{j}-0", f"p{j}", cpu=cpu, gpu=gpu))
    s = Scheduler(st, default_config()).open_session(SpyCache(), now=1000.0)
    s.allocate_handlers.append(lambda t: "refused" if t.name in refuse else None)
    return s


@settings(max_examples=40, deadline=None)
@given(nodes=hst.lists(hst.tuples(hst.integers(1, 8), hst.sampled_from([0, 2, 4]), hst.integers(0, 1)),
                       min_size=1, max_size=6),
       pods=hst.lists(hst.integers(0, len(_SHAPES) - 1), min_size=1, max_size=16),
       steps=hst.lists(hst.tuples(hst.integers(0, 3), hst.booleans(), hst.integers(0, 9)), max_size=24),
       refuse=hst.sets(hst.integers(0, 15), max_size=3))
def test_allocate_one_decides_as_allocate_run(nodes, pods, steps, refuse):
    """``allocate_one`` (class cache, reused output buffer) places, pipelines, refuses and
    undoes exactly as ``allocate_run`` of one task, in any sequence with runs, rollbacks and
    discards between; no node ends over its allocatable (idle >= 0 for what is allocated,
    idle + releasing >= 0 with pipelines)."""
    names = {f"p{j}-0" for j in refuse}
    one, ref = _lone_session(nodes, pods, names), _lone_session(nodes, pods, names)
    try:
        n = one.idle.shape[1]
        masks = {k: [np.ascontiguousarray(np.array([(i + k) % 3 != 0 or k == 0 for i in range(n)], dtype=np.uint8))
                     for _ in (0, 1)] for k in range(3)}          # the same masks reused (class cache)
        stmts = [Statement(one), Statement(ref)]
        for kind, allow, pick in steps:
            pend = [[t for t in sorted((tt for j in s.jobs.values() for tt in j.tasks.values()
                                        if tt.job_key.startswith("ns/p")), key=lambda t: t.name)
                     if t.status == S.PENDING] for s in (one, ref)]
            assert [t.key for t in pend[0]] == [t.key for t in pend[1]]
            if kind <= 1 and pend[0]:
                i = pick % len(pend[0])
                m = masks[pick % 3]
                got = stmts[0].allocate_one(pend[0][i], m[0], None, allow)
                want = stmts[1].allocate_run([pend[1][i]], m[1], None, allow)
                assert got == bool(want)
            elif kind == 2 and pend[0]:                      # a run through the shared node queue
                k = min(len(pend[0]), 1 + pick % 3)
                shape = pend[0][0].req.tobytes()
                run = [[t for t in p if t.req.tobytes() == shape][:k] for p in pend]
                assert stmts[0].allocate_run(run[0], masks[0][0], None, allow) == \
                    stmts[1].allocate_run(run[1], masks[0][1], None, allow)
            elif kind == 3:
                cp = pick % (len(stmts[0]) + 1)
                for s in stmts:
                    s.rollback(cp)
            for a, b in zip(snap(one), snap(ref)):
                assert a.tobytes() == b.tobytes()
            assert statuses(one) == statuses(ref)
            assert [(op.kind, op.task.key, op.node) for op in stmts[0].ops] == \
                [(op.kind, op.task.key, op.node) for op in stmts[1].ops]
            # no over-commit: nothing placed beyond a node's allocatable, idle or releasing
            assert (one.idle >= -1e-9).all() and (one.releasing >= -1e-9).all()
        for s in stmts:
            s.discard()
        for a, b in zip(snap(one), snap(ref)):
            assert a.tobytes() == b.tobytes()
    finally:
        one.close()
        ref.close()
