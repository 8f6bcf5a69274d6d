"""KAI's queue order (proportion queue_order.go): each rule on its own, then through simulate.

Vectors are [gpu, cpu millicores, memory bytes].
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proportion_builders import allocated, bound, job, node, open_session, queue, res, run

from kai.api import constants as C
from kai.plugins.queue_order import QueueOrder, less_equal

U = -1.0
TOTAL = (10.0, 10000.0, 1e10)


def task(vec, status=C.PodStatus.PENDING):
    return SimpleNamespace(vec=tuple(float(x) for x in vec), status=status)


def fake_job(key, request=(0, 0, 0), allocated_=(0, 0, 0)):
    pend = [task(request)] if any(request) else []
    alloc = [task(allocated_, C.PodStatus.RUNNING)] if any(allocated_) else []
    tasks = {f"{key}-{i}": t for i, t in enumerate(pend + alloc)}
    return SimpleNamespace(key=key, tasks=tasks, tasks_to_allocate=lambda *_a, **_k: list(pend))


def make(**queues):
    """queues: name -> dict(alloc, fair, deserved, share, priority, creation); returns (order, infos)."""
    names = list(queues)
    rows = [queues[n] for n in names]

    def arr(key, default):
        return np.array([r.get(key, default) for r in rows], dtype=float).reshape(len(rows), 3)

    state = SimpleNamespace(index={n: i for i, n in enumerate(names)},
                            alloc=arr("alloc", (0, 0, 0)), fair=arr("fair", (5, 5000, 5e9)),
                            deserved=arr("deserved", (U, U, U)), alloc_share=arr("share", (5, 5000, 5e9)),
                            total=np.array(TOTAL), quota_vector=lambda t: t.vec)
    infos = {n: SimpleNamespace(name=n, priority=r.get("priority", 100), creation=r.get("creation", i))
             for i, (n, r) in enumerate(zip(names, rows))}
    return QueueOrder(state, task_order_key=None), infos


def cmp(order, infos, lj=None, rj=None, **kw):
    return order.compare(infos["l"], infos["r"], lj, rj, **kw)


# ---------------------------------------------------------------------------------------------
# one rule at a time (every earlier rule tied)

def test_under_fair_share_first():
    o, q = make(l=dict(alloc=(6, 6000, 6e9), priority=200), r=dict(alloc=(1, 1000, 1e9)))
    assert cmp(o, q) == 1
    o, q = make(l=dict(alloc=(1, 1000, 1e9)), r=dict(alloc=(6, 6000, 6e9), priority=200, creation=-1))
    assert cmp(o, q) == -1


def test_over_fair_share_means_every_resource():
    # KAI's FairShareLessThanAllocated is strict in *all* resources: over in gpu only is not "over"
    o, q = make(l=dict(alloc=(6, 1000, 1e9), priority=200), r=dict(alloc=(1, 1000, 1e9)))
    assert cmp(o, q) == -1                       # decided by priority, not by rule 1
    o, q = make(l=dict(alloc=(5, 5000, 5e9), priority=200), r=dict())
    assert cmp(o, q) == -1                       # equal to fair share is not over


def test_starved_queue_first():
    # l would stay within deserved with its job, r would not; r has the higher priority
    o, q = make(l=dict(deserved=(2, U, U)), r=dict(alloc=(1, 0, 0), deserved=(1, U, U), priority=200))
    lj, rj = fake_job("lj", (2, 0, 0)), fake_job("rj", (1, 0, 0))
    assert cmp(o, q, lj, rj) == -1
    # with a bigger job l is not starved any more -> priority decides
    o, q = make(l=dict(deserved=(2, U, U)), r=dict(alloc=(1, 0, 0), deserved=(1, U, U), priority=200))
    assert cmp(o, q, fake_job("big", (3, 0, 0)), rj) == 1


def test_starved_uses_tolerance_and_unlimited():
    o, q = make(l=dict(alloc=(0.1 + 0.2, 0, 0), deserved=(0.3, U, U)),
                r=dict(deserved=(0, U, U), priority=200))
    assert cmp(o, q, None, fake_job("rj", (1, 0, 0))) == -1


def test_higher_priority_first():
    o, q = make(l=dict(priority=100, creation=0), r=dict(priority=150, creation=5))
    assert cmp(o, q) == 1


def test_zero_allocatable_share_penalized():
    # l would use gpu with an allocatable gpu share of 0 (DRS 1 x 1000); r uses 4000 GPUs of
    # a share of 5 (DRS 800 with the job): by DRS alone l would come first, the penalty puts it last
    o, q = make(l=dict(share=(0, 5000, 5e9), creation=0), r=dict(alloc=(3999, 0, 0), creation=1))
    assert o.drs(0, [1, 0, 0]) > o.drs(1, [4000, 0, 0])
    assert cmp(o, q, fake_job("lj", (1, 0, 0)), fake_job("rj", (1, 0, 0))) == 1
    # a zero share in a resource the job does not touch is no penalty
    o, q = make(l=dict(share=(5, 0, 5e9), creation=0), r=dict(alloc=(4, 0, 4e9), creation=1))
    assert cmp(o, q, fake_job("lj", (1, 0, 0)), fake_job("rj", (1, 0, 0))) == -1


def test_smaller_drs_with_job_first():
    # same allocation; r's job is smaller -> r's DRS with the job is smaller
    o, q = make(l=dict(alloc=(1, 0, 0)), r=dict(alloc=(1, 0, 0)))
    assert cmp(o, q, fake_job("lj", (2, 0, 0)), fake_job("rj", (1, 0, 0))) == 1
    # DRS is normalized by the allocatable share: 2/4 < 2/2
    o, q = make(l=dict(share=(4, 5000, 5e9)), r=dict(share=(2, 5000, 5e9), creation=-1))
    assert cmp(o, q, fake_job("lj", (2, 0, 0)), fake_job("rj", (2, 0, 0))) == -1


def test_drs_dominant_resource_and_unlimited_share():
    # l: gpu 1/5 = .2, cpu 4000/5000 = .8 -> .8 ; r: share -1 -> cluster total: 4/10, 4000/10000 -> .4
    o, q = make(l=dict(alloc=(1, 4000, 0)), r=dict(alloc=(4, 4000, 0), share=(U, U, U), creation=-1))
    assert o.drs(0, [1, 4000, 0]) == pytest.approx(0.8)
    assert o.drs(1, [4, 4000, 0]) == pytest.approx(0.4)
    assert cmp(o, q) == 1


def test_victims_are_subtracted():
    o, q = make(l=dict(alloc=(4, 0, 0)), r=dict(alloc=(3, 0, 0)))
    assert cmp(o, q) == 1
    # victim mode: no pending jobs, l's victims free 2 GPUs -> l's DRS (2) below r's (3)
    assert cmp(o, q, lv=[fake_job("v", allocated_=(2, 0, 0))], rv=[]) == -1


def test_drs_without_job_breaks_tie():
    # with their jobs both reach 3/5; without, l is at 2/5 and r at 1/5
    o, q = make(l=dict(alloc=(2, 0, 0)), r=dict(alloc=(1, 0, 0), creation=5))
    assert cmp(o, q, fake_job("lj", (1, 0, 0)), fake_job("rj", (2, 0, 0))) == 1


def test_smaller_allocatable_share_first():
    o, q = make(l=dict(share=(2, 5000, 5e9), creation=1), r=dict(share=(3, 5000, 5e9), creation=0))
    assert cmp(o, q) == -1
    # incomparable shares (smaller in one, larger in another) -> creation decides
    o, q = make(l=dict(share=(2, 6000, 5e9), creation=1), r=dict(share=(3, 5000, 5e9), creation=0))
    assert cmp(o, q) == 1
    # -1 is the largest share
    o, q = make(l=dict(share=(U, 5000, 5e9), creation=0), r=dict(share=(3, 5000, 5e9), creation=1))
    assert cmp(o, q) == 1


def test_creation_then_undecided():
    o, q = make(l=dict(creation=3), r=dict(creation=2))
    assert cmp(o, q) == 1
    o, q = make(l=dict(creation=2), r=dict(creation=2))
    assert cmp(o, q) == 0


def test_less_equal_quantities():
    assert less_equal((1, U, 0), (1, U, 0))
    assert not less_equal((U, 0, 0), (5, 0, 0))
    assert less_equal((1 + 1e-10, 0, 0), (1, 0, 0))


_QTY = st.one_of(st.sampled_from([U, 0.0, 1.0, 2.0, 1e-10, 2.0 + 5e-10, 1e9]),
                 st.floats(min_value=0, max_value=1e10, allow_nan=False))
_VEC = st.tuples(_QTY, _QTY, _QTY)


_AMOUNT = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.5]), st.floats(min_value=0, max_value=1e10))


@settings(max_examples=500, deadline=None)
@given(alloc=st.tuples(_AMOUNT, _AMOUNT, _AMOUNT), fair=_VEC, deserved=_VEC, share=_VEC,
       request=st.tuples(_AMOUNT, _AMOUNT, _AMOUNT),
       nudge=st.one_of(st.none(), st.tuples(*[st.sampled_from([0.0, 5e-10, -5e-10, 2e-9, -2e-9, U])] * 3)),
       victim=st.one_of(st.none(), st.tuples(_AMOUNT, _AMOUNT, _AMOUNT)))
def test_unrolled_stats_equal_the_reference(alloc, fair, deserved, share, request, nudge, victim):
    """The per-resource hot path of ``stats`` gives what the vector reading gives (quantities
    around the tolerance, unlimited -1 and zero shares included). ``nudge``: deserved set to
    allocated + request, moved by less or more than the tolerance (or unlimited)."""
    if nudge is not None:
        deserved = tuple(U if n == U else a + r + n for a, r, n in zip(alloc, request, nudge))
    order, _ = make(q=dict(alloc=alloc, fair=fair, deserved=deserved, share=share))
    j = fake_job("j", request=request)
    victims = [fake_job("v", allocated_=victim)] if victim else None
    assert order.stats(0, j, victims) == order.stats_reference(0, j, victims)
    assert order.stats(0, None) == order.stats_reference(0, None)


def test_total_over_a_chain_of_allocatable_shares():
    o, q = make(a=dict(share=(1, 1000, 1e9)), b=dict(share=(2, 1000, U)), c=dict(share=(2, 2000, U)),
                d=dict(share=(1, 1000, 1e9)))
    assert o.total_over(q.values())                                # a = d <= b <= c
    o, q = make(a=dict(share=(1, 2000, 1e9)), b=dict(share=(2, 1000, 1e9)))
    assert not o.total_over(q.values())                            # rule 7 cannot order them
    o, q = make(a=dict(share=(1, 1000, 1e9)), b=dict(share=(1 + 5e-10, 1000, 1e9)))
    assert not o.total_over(q.values())                            # a step inside the tolerance
    assert not o.total_over([SimpleNamespace(name="unknown")])


_SHARE = st.tuples(st.sampled_from([0.0, 1.0, 2.0, U]), st.sampled_from([0.0, 1000.0, U]), st.sampled_from([1e9, U]))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.tuples(_AMOUNT, _AMOUNT, _AMOUNT), _SHARE, st.integers(0, 2),
                               st.tuples(_AMOUNT, _AMOUNT, _AMOUNT)), min_size=3, max_size=6))
def test_total_over_means_a_sort_picks_as_the_walk(rows):
    """When ``total_over`` says so, the comparator (with a name tiebreak, as the session's
    fallback) is a strict total order: antisymmetric and transitive on every triple, so a
    sorted list's first queue is the one a linear walk picks."""
    spec = {f"q{i}": dict(alloc=a, share=sh, creation=c) for i, (a, sh, c, _) in enumerate(rows)}
    order, infos = make(**spec)
    jobs = {f"q{i}": fake_job(f"j{i}", request=r) for i, (*_, r) in enumerate(rows)}
    names = list(spec)
    if not order.total_over([infos[n] for n in names]):
        return

    def c(x, y):
        r = order.compare(infos[x], infos[y], jobs[x], jobs[y])
        return r if r else (-1 if x < y else (1 if x > y else 0))

    for x in names:
        for y in names:
            assert c(x, y) == -c(y, x)
            for z in names:
                if c(x, y) < 0 and c(y, z) < 0:
                    assert c(x, z) < 0
    walk = names[0]
    for n in names[1:]:
        if c(n, walk) < 0:
            walk = n
    import functools
    assert sorted(names, key=functools.cmp_to_key(c))[0] == walk


def test_init_request_cached_until_forgotten():
    o, _ = make(l=dict())
    j = fake_job("j", (1, 2, 3))
    assert o.init_request(j) == (1, 2, 3)
    j.tasks_to_allocate = lambda *_a, **_k: []
    assert o.init_request(j) == (1, 2, 3)
    o.forget("j")
    assert o.init_request(j) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------
# through the scheduler

def test_queue_under_fair_share_gets_next_allocation(tmp_path):
    # 3 GPUs. q1 (priority 200) runs 2 pods while its fair share is 1 GPU and 0 cpu/memory, so it
    # is over its fair share in every resource; q2 is not. Only one GPU is free: q2's job gets it
    # although q1 has the higher priority and the older job.
    no_cpu = res(0, -1, 0)
    pod = dict(cpu="1", memory="1Gi")
    report = run(tmp_path, [node("n1", gpu=3)],
                 [queue("q1", gpu=res(1, -1, 0), cpu=no_cpu, memory=no_cpu, priority=200, created=1),
                  queue("q2", gpu=res(1, -1, 0), cpu=no_cpu, memory=no_cpu, priority=100, created=2)],
                 [job("run", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1, **pod),
                  job("more", "q1", pods=1, created=2, **pod),
                  job("want", "q2", pods=1, created=3, **pod)])
    assert bound(report) == ["want-0"]


def test_starved_then_priority_decide(tmp_path):
    # q1 is not over its fair share when its cpu/memory quota is open (fair share = request).
    # With a gpu quota of 1, q2 would be starved (0 + 1 <= 1) and still win; with quota 0
    # neither queue is starved and priority 200 wins the GPU.
    pod = dict(cpu="1", memory="1Gi")
    report = run(tmp_path, [node("n1", gpu=3)],
                 [queue("q1", gpu=res(1, -1, 0), priority=200, created=1),
                  queue("q2", gpu=res(1, -1, 0), priority=100, created=2)],
                 [job("run", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1, **pod),
                  job("more", "q1", pods=1, created=2, **pod),
                  job("want", "q2", pods=1, created=3, **pod)])
    assert bound(report) == ["want-0"]                      # starved q2
    report = run(tmp_path, [node("n1", gpu=3)],
                 [queue("q1", gpu=res(1, -1, 0), priority=200, created=1),
                  queue("q2", gpu=res(0, -1, 0), priority=100, created=2)],
                 [job("run", "q1", pods=2, min_member=1, running=["n1", "n1"], created=1, **pod),
                  job("more", "q1", pods=1, created=2, **pod),
                  job("want", "q2", pods=1, created=3, **pod)])
    assert bound(report) == ["more-0"]


def test_equal_queues_interleave(tmp_path):
    # the allocate handler updates the order within the cycle: 2 + 2, not 3 + 1
    report = run(tmp_path, [node("n1", gpu=4)],
                 [queue("q1", gpu=res(0, -1, 1), created=1), queue("q2", gpu=res(0, -1, 1), created=2)],
                 [job(f"a{i}", "q1", created=i) for i in range(3)] + [job(f"b{i}", "q2", created=10 + i) for i in range(3)])
    assert bound(report) == ["a0-0", "b0-0", "a1-0", "b1-0"]
    assert allocated(report) == {"q1": 2, "q2": 2}


def test_drf_order_among_equal_queues(tmp_path):
    # cpu-only: equal quotas; q1 already uses 1000 of its 1500-core fair share, q2 800 (+9Gi of
    # 10Gi memory). With the 700-core job, q1's DRS is 1.13 and q2's 1.0: q2 goes first, and
    # only one of the two jobs fits.
    q = dict(gpu=res(0, -1, 0), cpu=res(1500, -1, 1), memory=res(1500, -1, 1))
    report = run(tmp_path, [node("n1", gpu=0, cpu="3000", memory="30G")],
                 [queue("q1", created=1, **q), queue("q2", created=2, **q)],
                 [job("ra", "q1", gpu=0, cpu="1000", memory="1G", running=["n1"], created=1),
                  job("pa", "q1", gpu=0, cpu="700", memory="1G", created=2),
                  job("rb", "q2", gpu=0, cpu="800", memory="9G", running=["n1"], created=3),
                  job("pb", "q2", gpu=0, cpu="700", memory="1G", created=4)])
    assert bound(report) == ["pb-0"]


def test_smaller_job_first_on_equal_share(tmp_path):
    # q1 (fair 4) runs 2 and wants 2 more, q2 (fair 2) runs 1 and wants 1 more: with their jobs
    # both reach DRS 1; without, both are at .5; q2's allocatable share is smaller -> q2 first
    report = run(tmp_path, [node("n1", gpu=4)],
                 [queue("q1", gpu=res(4, -1, 0), created=1), queue("q2", gpu=res(2, -1, 0), created=2)],
                 [job("r1", "q1", gpu=2, running=["n1"], created=1), job("r2", "q2", running=["n1"], created=2),
                  job("p1", "q1", gpu=2, created=3), job("p2", "q2", created=4)])
    assert bound(report) == ["p2-0"]


def test_three_level_order_descends_by_fair_share(tmp_path):
    # org -> {d1 (deserved 3) -> {a (2), b (1)}, d2 (1) -> {c (1)}}; 4 GPUs, weights 0, every
    # leaf wants 4 one-GPU jobs; fair shares = deserved. Order at each level:
    #   1. d1 (DRS with job 1/3) before d2 (1/1); in d1, a (1/2) before b (1/1)   -> a0
    #   2. d1 (2/3) before d2; a and b tie at DRS 1 with the job, b is at 0 without -> b0
    #   3. d1 and d2 tie at 1 with the job; without it d2 is at 0                   -> c0
    #   4. only d1 stays within deserved (3 <= 3); in d1 only a does (2 <= 2)       -> a1
    report = run(tmp_path, [node("n1", gpu=4)],
                 [queue("org"),
                  queue("d1", "org", gpu=res(3, -1, 0), created=1), queue("d2", "org", gpu=res(1, -1, 0), created=2),
                  queue("a", "d1", gpu=res(2, -1, 0), created=3), queue("b", "d1", gpu=res(1, -1, 0), created=4),
                  queue("c", "d2", gpu=res(1, -1, 0), created=5)],
                 [job(f"{leaf}{i}", leaf, created=i) for leaf in "abc" for i in range(4)])
    assert bound(report) == ["a0-0", "b0-0", "c0-0", "a1-0"]
    got = allocated(report)
    assert {k: got[k] for k in ("org", "d1", "d2", "a", "b", "c")} == {"org": 4, "d1": 3, "d2": 1, "a": 2, "b": 1, "c": 1}


def test_comparator_registered_once(tmp_path):
    ssn = open_session(tmp_path, [node("n1")], [queue("q1")], [job("a", "q1")])
    try:
        assert len(ssn.queue_order_fns) == 1
        q1 = ssn.queues.get("q1")
        assert ssn.queue_compare(q1, q1, None, None) in (-1, 1)
    finally:
        ssn.close()
