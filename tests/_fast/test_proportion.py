"""kai._fast.proportion: KAI fair-share division, compared with KAI's own test tables, the rules
of resource_division.go, and the pure-Python reference on random queue trees.

Case names cite the KAI test they come from (kai-scheduler/KAI-Scheduler):
  RD  = pkg/scheduler/plugins/proportion/resource_division/resource_division_test.go
  PT  = pkg/scheduler/plugins/proportion/proportion_test.go ("Set Fair Share in Proportion")
  QRS = pkg/scheduler/plugins/proportion/resource_share/queue_resource_share_test.go
KAI calls divideOverQuotaResource(amount) directly on queues whose FairShare is preset to their
deserved; here that is the full division with capacity = deserved + amount.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai._fast import proportion as fast
from kai._fast.reference import proportion as ref

IMPLS = [pytest.param(fast, id="cython"), pytest.param(ref, id="reference")]
U = -1.0  # unlimited


def q(d=0.0, w=0.0, lim=U, req=0.0, prio=0, key=0, parent=-1, use=0.0):
    return dict(d=d, w=w, lim=lim, req=req, prio=prio, key=key, parent=parent, use=use)


def solve(impl, queues, capacity, k=0.0):
    """Run ``impl.divide_fair_share``; per-resource fields may be scalars (R = 1) or lists."""
    cap = np.atleast_1d(np.asarray(capacity, dtype=np.float64))
    n, n_res = len(queues), cap.shape[0]

    def col(name):
        return np.array([np.broadcast_to(np.asarray(x[name], dtype=np.float64), (n_res,))
                         for x in queues], dtype=np.float64).reshape(n, n_res)

    out = np.full((n, n_res), np.nan)
    impl.divide_fair_share(
        np.array([x["parent"] for x in queues], dtype=np.int32),
        np.array([x["prio"] for x in queues], dtype=np.int64),
        np.array([x["key"] for x in queues], dtype=np.int64),
        col("d"), col("lim"), col("w"), col("req"), col("use"), cap, k, out)
    return out


# ------------------------------------------------------------------------ KAI table cases

# (name, queues, capacity, expected fair shares) for one resource
GPU_CASES = [
    # RD "single queue within quota (sanity)": deserved 3, weight 0, request 2
    ("RD single queue within quota: gives requested GPUs - no remaining",
     [q(d=3, req=2)], 2, [2]),
    ("RD single queue within quota: gives requested GPUs with remaining",
     [q(d=3, req=2)], 3, [2]),
    ("RD single queue within quota: doesn't give more GPUs than allowed",
     [q(d=3, req=2, lim=2)], 3, [2]),
    ("RD single queue within quota: gives up to deserved when over subscribed",
     [q(d=3, req=2)], 1, [2]),
    ("RD single queue within quota: gives up to full quota",
     [q(d=3, req=5)], 7, [3]),
    ("RD single queue within quota: gives with fraction, if stated in deserved",
     [q(d=1.5, req=2)], 2, [1.5]),
    ("RD single queue within quota: gives with fraction, if stated in request",
     [q(d=3, req=1.5)], 2, [1.5]),
    ("RD single queue within quota: doesn't give if deserved is zero",
     [q(d=0, req=2)], 2, [0]),
    # RD "single queue over quota (sanity)": deserved 3 (= preset fair share), weight 1, request 5
    ("RD single queue over quota: gives requested GPUs no remaining",
     [q(d=3, w=1, req=5)], 3 + 2, [5]),
    ("RD single queue over quota: gives requested GPUs with remaining",
     [q(d=3, w=1, req=5)], 3 + 3, [5]),
    ("RD single queue over quota: doesn't give more GPUs than allowed",
     [q(d=3, w=1, req=5, lim=4)], 3 + 2, [4]),
    ("RD single queue over quota: doesn't give when over quota weight is zero",
     [q(d=3, w=0, req=5)], 3 + 2, [3]),
    ("RD single queue over quota: gives with fraction if requested",
     [q(d=3, w=1, req=4.5)], 3 + 2, [4.5]),
    ("RD single queue over quota: gives remainder fraction",
     [q(d=3, w=1, req=5)], 3 + 0.5, [3.5]),
    ("RD single queue over quota: gives when deserved is zero",
     [q(d=0, w=1, req=5)], 6, [5]),
    ("RD single queue over quota: doesn't break when there are zero resources to divide",
     [q(d=3, w=1, req=5)], 3, [3]),
    ("RD single queue over quota: doesn't give when over quota weight is zero (10 left)",
     [q(d=3, w=0, req=5)], 3 + 10, [3]),
    ("RD two queues over quota (sanity): doesn't give when over quota weight is zero",
     [q(d=3, w=0, req=5, key=0), q(d=3, w=1, req=3, key=1)], 6 + 10, [3, 3]),
    # RD "two queues" table: deserved 2, weight 2, request 6, queue 1 created first
    ("RD two queues: allocates many available gpus",
     [q(d=2, w=2, req=6, key=0), q(d=2, w=2, req=6, key=1)], 15, [6, 6]),
    ("RD two queues: allocates exact requested amount gpus",
     [q(d=2, w=2, req=6, key=0), q(d=2, w=2, req=6, key=1)], 12, [6, 6]),
    ("RD two queues: allocates GPUs proportionally",
     [q(d=2, w=1, req=6, key=0), q(d=2, w=3, req=6, key=1)], 8, [3, 5]),
    ("RD two queues: doesn't allocate more than allowed",
     [q(d=2, w=2, req=6, lim=5, key=0), q(d=2, w=2, req=6, key=1)], 12, [5, 6]),
    ("RD two queues: distributes remainder between queues based on largest remaining",
     [q(d=2, w=1, req=10, key=0), q(d=2, w=4, req=10, key=1)], 11, [3, 8]),
    ("RD two queues: distributes remainder between queues based on creation time",
     [q(d=2, w=2, req=6, key=0), q(d=2, w=2, req=6, key=1)], 11, [6, 5]),
    ("RD two queues: priority doesn't affect deserved",
     [q(d=2, w=2, req=6, prio=1, key=0), q(d=2, w=2, req=6, prio=2, key=1)], 4, [2, 2]),
    ("RD two queues: priority does affect over-quota",
     [q(d=2, w=2, req=6, prio=1, key=0), q(d=2, w=2, req=6, prio=2, key=1)], 6, [2, 4]),
    ("RD two queues: priority does affect over-quota, even when overQuotaWeight is set",
     [q(d=2, w=100, req=6, prio=1, key=0), q(d=2, w=1, req=6, prio=2, key=1)], 6, [2, 4]),
    ("RD divides the remainder even when using priorities",
     [q(d=2, w=2, req=5, prio=2, key=0), q(d=2, w=2, req=5, prio=2, key=1),
      q(d=1, w=2, req=0, prio=1, key=2)], 5, [3, 2, 0]),
    # RD "setResourceShare - CPU" (millicores); memory tables are identical (bytes)
    ("RD CPU one queue: gives requested CPUs to queue",
     [q(d=3000, w=3000, req=2000)], 3000, [2000]),
    ("RD CPU one queue: gives deserved in over subscription",
     [q(d=3000, w=3000, req=2000)], 1000, [2000]),
    ("RD CPU two queues: queue 2 has no deserved CPU - reclaims all resources of queue 2",
     [q(d=5000, w=5000, req=10000, key=0), q(d=0, w=0, req=5000, key=1)], 10000,
     [10000, 0]),
    ("RD CPU three queues: all queues get their deserved fairShare - over subscription",
     [q(d=5000, w=5000, req=5000, key=i) for i in range(3)], 10000, [5000] * 3),
    ("RD CPU three queues: all queues get their deserved fairShare - over quota",
     [q(d=5000, w=5000, req=6000, key=i) for i in range(3)], 18000, [6000] * 3),
    ("RD CPU three queues: one queue request more than it deserves - reclaims unneeded",
     [q(d=5000, w=5000, req=7000, key=0), q(d=5000, w=5000, req=2000, key=1),
      q(d=5000, w=5000, req=2000, key=2)], 10000, [6000, 2000, 2000]),
    ("RD CPU three queues: reclaims from both allocated queues to fulfill the last",
     [q(d=5000, w=5000, req=7000, key=0), q(d=5000, w=5000, req=5000, key=1),
      q(d=5000, w=5000, req=2000, key=2)], 10000, [5000, 5000, 2000]),
    ("RD CPU three queues: one queue request more than it deserves and allowed",
     [q(d=5000, w=5000, req=7000, lim=7000, key=0), q(d=5000, w=5000, req=2000, key=1),
      q(d=5000, w=5000, req=2000, key=2)], 10000, [6000, 2000, 2000]),
    ("RD CPU three queues: q2 has no deserved CPU but is allowed OQ",
     [q(d=5000, w=5000, req=5000, key=0), q(d=0, w=5000, req=5000, key=1),
      q(d=5000, w=5000, req=5000, key=2)], 10000, [5000, 0, 5000]),
    ("RD CPU three queues: q2 no deserved, q1,q3 request more than they deserve",
     [q(d=5000, w=5000, req=10000, key=0), q(d=0, w=5000, req=5000, key=1),
      q(d=5000, w=5000, req=10000, key=2)], 10000, [5000, 0, 5000]),
    # RD "SetResourcesShare" advanced scenarios (GPU column)
    ("RD SetResourcesShare advanced: fractional fair share",
     [q(d=12, w=12, req=32.54999999999996, key=0), q(d=7, w=7, req=9.5, key=1),
      q(d=2, w=2, lim=2, req=1.65, key=2)], 45, [32.54999999999996, 9.5, 1.65]),
    # same creationTimestamp: UID "queue-1" < "queue-2" decides, i.e. the lower row
    ("RD SetResourcesShare advanced: divide last remaining GPU based to similar queues",
     [q(d=2, w=2, req=3, key=7), q(d=2, w=2, req=3, key=7)], 5, [3, 2]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,queues,capacity,expected", GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_kai_single_resource_tables(impl, name, queues, capacity, expected):
    out = solve(impl, queues, capacity)
    assert out[:, 0].tolist() == expected


# RD "SetResourcesShare": three resources at once, columns (gpu, cpu, memory)
def _qq(d, w, req, lim=(U, U, U), key=0):
    return q(d=list(d), w=list(w), req=list(req), lim=list(lim), key=key)


MULTI_CASES = [
    ("RD SetResourcesShare one queue: Enough resources - should gets all request",
     [_qq((1, 200, 1000), (1, 1, 1), (1, 500, 500))], (10, 2500, 1000), [[1, 500, 500]]),
    ("RD SetResourcesShare one queue: Not enough resources - should gets all cluster",
     [_qq((2, 20000, 1000), (1, 1, 1), (3, 2500, 5000))], (1, 1000, 3000),
     [[2, 2500, 3000]]),
    ("RD SetResourcesShare two queues: Enough resources - should gets all request",
     [_qq((1, 200, 1000), (1, 1, 1), (1, 500, 500), key=i) for i in range(2)],
     (10, 2500, 1000), [[1, 500, 500]] * 2),
    ("RD SetResourcesShare two queues: Request more than total with same Over Quota and "
     "deserved - divide evenly",
     [_qq((1, 2000, 1000), (1, 1, 1), (8, 3000, 5000), key=i) for i in range(2)],
     (10, 3000, 1000), [[5, 2000, 1000]] * 2),
    ("RD SetResourcesShare two queues: Request more than total with different Over Quota",
     [_qq((250,) * 3, (1,) * 3, (5000,) * 3, key=0),
      _qq((150,) * 3, (2,) * 3, (5000,) * 3, key=1)],
     (1000, 1000, 1000), [[450] * 3, [550] * 3]),
    ("RD SetResourcesShare two queues: Request more than total with different Over Quota "
     "and max allowed",
     [_qq((250,) * 3, (1,) * 3, (5000,) * 3, key=0),
      _qq((150,) * 3, (2,) * 3, (5000,) * 3, lim=(400,) * 3, key=1)],
     (1000, 1000, 1000), [[600] * 3, [400] * 3]),
    ("RD SetResourcesShare three queues: divide resource evenly queues",
     [_qq((1000,) * 3, (1,) * 3, (10000,) * 3, key=i) for i in range(3)],
     (9999, 9999, 9999), [[3333] * 3] * 3),
    ("RD SetResourcesShare three queues: divide resource between queues with different "
     "over quota",
     [_qq((0,) * 3, (w,) * 3, (10000,) * 3, key=i) for i, w in enumerate((6, 2, 1))],
     (9999, 9999, 9999), [[6666] * 3, [2222] * 3, [1111] * 3]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,queues,capacity,expected", MULTI_CASES,
                         ids=[c[0] for c in MULTI_CASES])
def test_kai_set_resources_share(impl, name, queues, capacity, expected):
    assert solve(impl, queues, capacity).tolist() == expected


# PT "Set fair share for multi hierarchy queues" and "... 2 hierarchy queues - simplified"
# (GPU only; weights unset in KAI are 0; requests are the tables' own values)
def _simplified(deserved=None, weight=None, priority=None):
    deserved = {"d1": 2, "q1": 2, "d2": 2, "q2": 2, **(deserved or {})}
    weight = {"d1": 1, "q1": 1, "d2": 1, "q2": 1, **(weight or {})}
    priority = {"d1": 0, "q1": 0, "d2": 0, "q2": 0, **(priority or {})}
    names = ["d1", "q1", "d2", "q2"]
    parents = {"d1": -1, "q1": 0, "d2": -1, "q2": 2}
    return [q(d=deserved[x], w=weight[x], req=100, prio=priority[x], parent=parents[x])
            for x in names]


TREE_CASES = [
    ("PT simple scenario with single top queue",
     [q(d=3, req=3), q(d=3, req=3, parent=0), q(d=2, req=2, parent=1),
      q(d=1, req=1, parent=1)], 3, [3, 3, 2, 1]),
    ("PT two top parent queues",
     [q(d=2, req=2), q(d=1, req=1, parent=0), q(d=1, req=1, parent=0),
      q(d=2, req=2), q(d=0, req=0, parent=3), q(d=1, w=1, req=2, parent=3)], 4,
     [2, 1, 1, 2, 0, 2]),
    ("PT 2 hierarchy simplified: two top parent queues - sanity",
     _simplified(), 4, [2, 2, 2, 2]),
    ("PT 2 hierarchy simplified: two top parent queues - deserved department quota",
     _simplified(deserved={"d1": 3, "d2": 1}), 4, [3, 3, 1, 2]),
    ("PT 2 hierarchy simplified: two top parent queues - over-quota",
     _simplified(deserved={"d1": 3, "d2": 1}), 12, [7, 7, 5, 5]),
    ("PT 2 hierarchy simplified: two top parent queues - over-quota weight",
     _simplified(deserved={"d1": 3, "d2": 1}, weight={"d1": 1, "d2": 7}), 12, [4, 4, 8, 8]),
    ("PT 2 hierarchy simplified: two top parent queues - over-quota weight - reversed",
     _simplified(deserved={"d1": 3, "d2": 1}, weight={"d1": 7, "d2": 1}), 12,
     [10, 10, 2, 2]),
    ("PT 2 hierarchy simplified: two top parent queues - priority",
     _simplified(deserved={"d1": 1, "q1": 1, "d2": 1, "q2": 1}, weight={"d1": 7, "d2": 1},
                 priority={"d1": 1, "d2": 2}), 12, [1, 1, 11, 11]),
    ("PT 2 hierarchy simplified: two top parent queues - priority - reversed",
     _simplified(deserved={"d1": 1, "q1": 1, "d2": 1, "q2": 1}, weight={"d1": 1, "d2": 7},
                 priority={"d1": 2, "d2": 1}), 12, [11, 11, 1, 1]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,queues,capacity,expected", TREE_CASES,
                         ids=[c[0] for c in TREE_CASES])
def test_kai_hierarchy_tables(impl, name, queues, capacity, expected):
    assert solve(impl, queues, capacity)[:, 0].tolist() == expected


# ------------------------------------------------------------------------ one case per rule

RULE_CASES = [
    # weight 0 never gets over-quota, even when it is the only one asking
    ("weight 0 next to a weighted queue", [q(w=0, req=9, key=0), q(w=1, req=9, key=1)], 10,
     [0, 9]),
    ("weight 0 alone leaves the surplus unassigned", [q(d=1, w=0, req=9)], 10, [1]),
    # limits: 0 means nothing, a finite limit caps deserved and over-quota alike
    ("limit 0 gives nothing even with quota", [q(d=5, w=1, lim=0, req=5)], 10, [0]),
    ("limit below deserved caps the deserved pass", [q(d=5, w=1, lim=3, req=9)], 10, [3]),
    ("limit caps over-quota; the rest goes to the other queue",
     [q(w=1, lim=2, req=9, key=0), q(w=1, req=9, key=1)], 10, [2, 8]),
    # -1 quota = the whole amount being divided
    ("deserved -1 takes up to its request", [q(d=U, req=7), q(d=0, w=1, req=9, key=1)], 10,
     [7, 3]),
    ("deserved -1 twice oversubscribes and skips over-quota",
     [q(d=U, w=1, req=7, key=0), q(d=U, w=1, req=6, key=1)], 10, [7, 6]),
    ("oversubscribed quotas: everyone keeps min(deserved, request), no over-quota",
     [q(d=6, w=1, req=9, key=0), q(d=6, w=1, req=9, key=1), q(d=0, w=5, req=9, key=2)], 10,
     [6, 6, 0]),
    # priority groups, descending: leftovers flow strictly downwards
    ("higher priority is served first, the leftover flows down",
     [q(w=1, req=4, prio=10, key=1), q(w=1, req=100, prio=5, key=0),
      q(w=1, req=100, prio=1, key=2)], 10, [4, 6, 0]),
    # flooring to whole units and the remainder, millicores and bytes too
    ("cpu millicores floored, remainder by order_key",
     [q(w=1, req=1000, key=2), q(w=1, req=1000, key=0), q(w=1, req=1000, key=1)], 1000,
     [333, 334, 333]),
    ("memory bytes floored, remainder to the largest fraction",
     [q(w=1, req=10**9, key=1), q(w=2, req=10**9, key=0)], 1_000_000_001,
     [333_333_334, 666_666_667]),
    ("equal fraction and order_key: lower row index wins",
     [q(w=1, req=9, key=3), q(w=1, req=9, key=3), q(w=1, req=9, key=3)], 4, [2, 1, 1]),
    ("a chunk of the remainder is at most what is left (fractional capacity)",
     [q(w=1, req=9, key=0), q(w=1, req=9, key=1)], 2.5, [1.5, 1]),
    # round 1 (pieces 1.5): q0 floored to 1 (fraction .5), q1 satisfied, q2/q3 floored;
    # round 2 satisfies q0 (its .5 is forgotten); round 3 leaves q2/q3 with .875 each
    ("a queue satisfied in a later round loses its remembered fraction",
     [q(w=1, req=1.75, key=0), q(w=1, req=0.5, key=1), q(w=1, req=9, key=2),
      q(w=1, req=9, key=3)], 6, [1.75, 0.5, 2, 1.75]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,queues,capacity,expected", RULE_CASES,
                         ids=[c[0] for c in RULE_CASES])
def test_rules(impl, name, queues, capacity, expected):
    assert solve(impl, queues, capacity)[:, 0].tolist() == expected


@pytest.mark.parametrize("impl", IMPLS)
def test_time_based_fairness_k_value(impl):
    # nW = 0.5 each; shareWeight = max(0, nW + k (nW - usage))
    two = [q(w=1, req=100, key=0, use=0.5), q(w=1, req=100, key=1, use=0.0)]
    # k=1: weights 0.5 and 1.0 -> 3.33 / 6.67 -> floors 3 / 6, remainder to the larger fraction
    assert solve(impl, two, 10, k=1.0)[:, 0].tolist() == [3, 7]
    # k=0 ignores usage
    assert solve(impl, two, 10, k=0.0)[:, 0].tolist() == [5, 5]
    # heavy past usage drives the share weight to 0: nothing over quota for that queue
    heavy = [q(w=1, req=100, key=0, use=2.0), q(w=1, req=100, key=1, use=0.0)]
    assert solve(impl, heavy, 10, k=1.0)[:, 0].tolist() == [0, 10]


@pytest.mark.parametrize("impl", IMPLS)
def test_three_level_tree_with_over_quota_at_every_level(impl):
    # A, B top level; A -> a1, a2; a2 -> a2x, a2y; B -> b1, b2. Leaf requests aggregated.
    parent = [-1, 0, 0, 2, 2, -1, 5, 5]
    leaf_req = [0, 2, 0, 4, 6, 0, 50, 50]
    req = impl.aggregate_to_parents(parent, np.array(leaf_req, dtype=float)[:, None])[:, 0]
    assert req.tolist() == [12, 2, 10, 4, 6, 100, 50, 50]
    queues = [
        q(d=4, w=1, req=req[0], key=0, parent=-1),     # A
        q(d=2, w=1, req=req[1], key=1, parent=0),      # a1
        q(d=0, w=3, req=req[2], key=2, parent=0),      # a2
        q(d=U, w=1, req=req[3], key=3, parent=2),      # a2x
        q(d=0, w=1, req=req[4], key=4, parent=2),      # a2y
        q(d=4, w=1, req=req[5], key=5, parent=-1),     # B
        q(d=1, w=1, lim=3, req=req[6], key=6, parent=5),   # b1
        q(d=1, w=2, req=req[7], key=7, parent=5),      # b2
    ]
    out = solve(impl, queues, 20)[:, 0].tolist()
    # top: 4 + 4 deserved, 12 over quota split 6/6 -> A 10, B 10
    # A's 10: a1 2 (its request), a2 the other 8; a2's 8: a2x 4 (-1 quota), a2y 4
    # B's 10: 1 + 1 deserved, 8 by weights 1:2 -> b1 capped at 3, b2 7
    assert out == [10, 2, 8, 4, 4, 10, 3, 7]


@pytest.mark.parametrize("impl", IMPLS)
def test_parents_in_any_order(impl):
    # the same tree as PT "two top parent queues", rows shuffled so children precede parents
    queues = [q(d=1, w=1, req=2, parent=5), q(d=1, req=1, parent=2), q(d=2, req=2),
              q(d=1, req=1, parent=2), q(d=0, req=0, parent=5), q(d=2, req=2)]
    assert solve(impl, queues, 4)[:, 0].tolist() == [2, 1, 2, 1, 0, 2]


@pytest.mark.parametrize("impl", IMPLS)
def test_input_validation(impl):
    ok = [q(d=1, req=1), q(d=1, req=1, parent=0)]
    with pytest.raises(ValueError, match="cycle"):
        solve(impl, [q(parent=1), q(parent=0)], 1)
    with pytest.raises(ValueError, match="cycle"):
        solve(impl, [q(parent=0)], 1)
    with pytest.raises(ValueError, match="parent"):
        solve(impl, [q(parent=5)], 1)
    with pytest.raises(ValueError, match="finite"):
        solve(impl, [q(req=float("nan"))], 1)
    n = len(ok)
    args = dict(parent=[-1, 0], priority=[0, 0], order_key=[0, 1], deserved=np.ones((n, 1)),
                limit=-np.ones((n, 1)), weight=np.ones((n, 1)), request=np.ones((n, 1)),
                usage=np.zeros((n, 1)), capacity=[3.0], k_value=1.0)
    with pytest.raises(ValueError, match="fair_share_out"):
        impl.divide_fair_share(**args, fair_share_out=np.zeros((n, 2)))
    with pytest.raises(ValueError, match="fair_share_out"):
        impl.divide_fair_share(**args, fair_share_out=np.zeros((n, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="deserved"):
        impl.divide_fair_share(**{**args, "deserved": np.ones((n, 2))},
                               fair_share_out=np.zeros((n, 1)))
    out = impl.divide_fair_share(**args, fair_share_out=np.zeros((n, 1)))
    assert out[:, 0].tolist() == [1, 1]
    # empty input is fine
    empty = np.zeros((0, 3))
    impl.divide_fair_share([], [], [], empty, empty, empty, empty, empty, [1, 2, 3], 1.0,
                           np.zeros((0, 3)))


# ------------------------------------------------------------------------ DRS helpers

@pytest.mark.parametrize("impl", IMPLS)
def test_dominant_resource_share(impl):
    out = np.zeros(4)
    allocated = [[5, 12, 19],       # QRS TestQueueResourceShare_GetDominantResourceShare
                 [2, 0, 1],         # allocatable -1 -> cluster total
                 [0, 0, 0.5],       # allocatable 0 -> allocated * 1000
                 [0, 0, 0]]         # nothing allocated -> 0
    allocatable = [[2, 9, 16], [-1, -1, 4], [10, 10, 0], [0, -1, 3]]
    total = [8, 100, 8]
    impl.dominant_resource_share(allocated, allocatable, total, out)
    assert out.tolist() == [2.5, 0.25, 500.0, 0.0]
    # QRS passes an empty ResourceQuantities as the total: zeros
    impl.dominant_resource_share([[5, 12, 19]], [[2, 9, 16]], [0, 0, 0], out[:1])
    assert out[0] == 2.5


@pytest.mark.parametrize("impl", IMPLS)
def test_allocatable_share(impl):
    # QRS TestQueueResourceShare_GetAllocatableShare: deserved 1/8/15, fair 2/9/16,
    # limit 3/10/17 -> 2/9/16; plus -1 deserved -> limit; finite limit caps
    deserved = [[1, 8, 15], [-1, -1, 4], [5, 0, 0]]
    fair = [[2, 9, 16], [7, 7, 2], [1, 3, 9]]
    limit = [[3, 10, 17], [-1, 6, 9], [4, -1, 0]]
    out = np.zeros((3, 3))
    impl.allocatable_share(deserved, fair, limit, out)
    assert out.tolist() == [[2, 9, 16], [-1, 6, 4], [4, 3, 0]]


@pytest.mark.parametrize("impl", IMPLS)
def test_aggregate_to_parents(impl):
    parent = [3, -1, 1, 1, -1]
    values = np.array([[1, 10], [0, 0], [2, 20], [0.5, 5], [7, 70]])
    out = impl.aggregate_to_parents(parent, values)
    assert out.tolist() == [[1, 10], [3.5, 35], [2, 20], [1.5, 15], [7, 70]]
    assert values[1].tolist() == [0, 0]      # input untouched
    with pytest.raises(ValueError, match="cycle"):
        impl.aggregate_to_parents([1, 0], np.zeros((2, 1)))


# ------------------------------------------------------------------------ properties

@st.composite
def trees(draw, integral=True):
    n = draw(st.integers(1, 24))
    n_res = draw(st.integers(1, 3))
    parent = [-1]
    for i in range(1, n):
        parent.append(draw(st.integers(-1, i - 1)))
    perm = draw(st.permutations(range(n)))          # rows in arbitrary order
    inv = {old: new for new, old in enumerate(perm)}
    parent = [(-1 if parent[old] < 0 else inv[parent[old]]) for old in perm]

    def num(lo, hi):
        if integral:
            return st.integers(lo, hi).map(float)
        return st.one_of(st.integers(lo, hi).map(float),
                         st.floats(lo, hi, allow_nan=False).map(lambda x: round(x, 3)))

    def grid(elements):
        return np.array(draw(st.lists(st.lists(elements, min_size=n_res, max_size=n_res),
                                      min_size=n, max_size=n)), dtype=np.float64)

    deserved = grid(st.one_of(st.just(-1.0), num(0, 10)))
    limit = grid(st.one_of(st.just(-1.0), st.just(-1.0), num(0, 15)))
    weight = grid(st.sampled_from([0.0, 1.0, 1.0, 2.0, 3.0, 0.5]))
    own = grid(num(0, 20))
    leaf = np.array([i not in parent for i in range(n)])
    own[~leaf] = 0.0                                # only leaves hold jobs in KAI
    request = ref.aggregate_to_parents(parent, own)
    usage = grid(st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.6, 1.5]))
    priority = draw(st.lists(st.sampled_from([50, 100, 100, 125]), min_size=n, max_size=n))
    key = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    capacity = np.array(draw(st.lists(num(0, 60), min_size=n_res, max_size=n_res)))
    k_value = draw(st.sampled_from([0.0, 1.0, 0.5, 2.0]))
    return dict(parent=np.array(parent, dtype=np.int32), priority=np.array(priority),
                order_key=np.array(key), deserved=deserved, limit=limit, weight=weight,
                request=request, usage=usage, capacity=capacity, k_value=k_value)


def run(impl, data):
    out = np.full(data["deserved"].shape, np.nan)
    return impl.divide_fair_share(**data, fair_share_out=out)


def groups(data, fair):
    """(total, members) per sibling group and resource: roots with capacity, then children."""
    parent = data["parent"].tolist()
    n = len(parent)
    for r in range(data["capacity"].shape[0]):
        yield r, float(data["capacity"][r]), [i for i in range(n) if parent[i] < 0]
        for p in range(n):
            kids = [i for i in range(n) if parent[i] == p]
            if kids:
                yield r, float(fair[p, r]), kids


def deserved_amount(data, i, r, total):
    d = data["deserved"][i, r]
    d = total if d == -1 else d
    lim, req = data["limit"][i, r], data["request"][i, r]
    requestable = req if lim == -1 else min(lim, req)
    return min(d, requestable)


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(trees(integral=False))
def test_cython_equals_reference_fractional(data):
    assert np.array_equal(run(fast, data), run(ref, data))


@SETTINGS
@given(trees(integral=True))
def test_properties_integral(data):
    fair = run(fast, data)
    assert np.array_equal(fair, run(ref, data))
    eps = 1e-9
    for r, total, members in groups(data, fair):
        floor_amounts = [deserved_amount(data, i, r, total) for i in members]
        # every queue keeps at least min(deserved, request, limit) (its deserved pass)
        for i, amount in zip(members, floor_amounts):
            assert fair[i, r] >= amount
        if sum(floor_amounts) <= total:
            # no oversubscription: siblings never share out more than the parent's fair share
            assert sum(fair[i, r] for i in members) <= total + eps
        else:
            # oversubscribed quotas: the over-quota pass is skipped
            assert [fair[i, r] for i in members] == floor_amounts
    # with whole units everywhere nobody ends above its limit or its request
    lim, req = data["limit"], data["request"]
    capped = lim != -1
    assert (fair[capped] <= lim[capped]).all()
    assert (fair <= req + eps).all()
    assert (fair == np.floor(fair)).all()


@SETTINGS
@given(trees(integral=True))
def test_aggregate_to_parents_matches_reference(data):
    values = data["request"] * 0.5 + data["usage"]
    assert np.array_equal(fast.aggregate_to_parents(data["parent"], values),
                          ref.aggregate_to_parents(data["parent"], values))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 20).map(float), min_size=3, max_size=3), min_size=n,
             max_size=n),
    st.lists(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 4.0, 10.0]), min_size=3, max_size=3),
             min_size=n, max_size=n),
    st.lists(st.sampled_from([0.0, 10.0, 64.0]), min_size=3, max_size=3))))
def test_drs_cython_equals_reference(args):
    allocated, share, total = args
    a, b = np.zeros(len(allocated)), np.zeros(len(allocated))
    fast.dominant_resource_share(allocated, share, total, a)
    ref.dominant_resource_share(allocated, share, total, b)
    assert np.array_equal(a, b)
