"""JobsOrderByQueues against the plain walk it replaced: every child of every queue asked at
every pop, leaves as heaps. Random queue trees, job sets, depth limits, push-backs and a queue
order that moves with each pop (as fair share does) must give the same pop sequence."""
from __future__ import annotations

import heapq
import itertools
import random
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions.common.job_order import JobsOrderByQueues
from kai.api.queue_info import QueueTree
from kai.sim.synthetic import open_queue


class ReferenceOrder:
    """The walk before the active-subtree lists: visits every queue of the tree on each pop."""

    def __init__(self, ssn, jobs, depth=None) -> None:
        self.ssn, self.tree, self.depth = ssn, ssn.queues, depth
        self._counter = itertools.count()
        self.leaves: dict[str, list] = {}
        self.popped: dict[str, int] = {}
        for job in jobs:
            self.push(job)

    def push(self, job) -> None:
        heapq.heappush(self.leaves.setdefault(job.queue, []), (self.ssn.job_order_key(job), next(self._counter), job))

    def _head(self, queue):
        q = self.tree.get(queue)
        if q is None:
            return None
        if q.is_leaf:
            heap = self.leaves.get(queue)
            if not heap or (self.depth is not None and self.popped.get(queue, 0) >= self.depth):
                return None
            return heap[0][2]
        best = self._best_child(q.children)
        return best[1] if best else None

    def _best_child(self, names):
        best = None
        for name in names:
            head = self._head(name)
            if head is None:
                continue
            cand = (self.tree.get(name), head)
            if best is None or self.ssn.queue_compare(cand[0], best[0], cand[1], best[1]) < 0:
                best = cand
        return best

    def pop(self):
        best = self._best_child([q.name for q in self.tree.roots()])
        if best is None:
            return None
        queue = best[0]
        while not queue.is_leaf:
            queue = self._best_child(queue.children)[0]
        self.popped[queue.name] = self.popped.get(queue.name, 0) + 1
        return heapq.heappop(self.leaves[queue.name])[2]


def _world(seed: int):
    rng = random.Random(seed)
    queues = [open_queue("r0"), open_queue("r1")]
    names = ["r0", "r1"]
    for i in range(rng.randint(1, 12)):
        name = f"q{i}"
        queues.append(open_queue(name, rng.choice(names)))
        names.append(name)
    tree = QueueTree(queues)
    leaves = [n for n in names if tree.get(n).is_leaf] + ["gone"]
    jobs = [SimpleNamespace(key=f"j{k}", queue=rng.choice(leaves), prio=rng.randrange(3), size=rng.randint(1, 4))
            for k in range(rng.randint(0, 40))]
    return rng, tree, jobs


def _session(tree, rng):
    used: dict[str, int] = {}      # grows as jobs pop: the order moves like fair share does
    weight = {name: rng.randint(1, 3) for name in tree.queues}

    def compare(lq, rq, lj, rj):
        lk = (used.get(lq.name, 0) * weight[lq.name] + lj.size, -lj.prio, lq.name)
        rk = (used.get(rq.name, 0) * weight[rq.name] + rj.size, -rj.prio, rq.name)
        return -1 if lk < rk else 1

    ssn = SimpleNamespace(queues=tree, queue_compare=compare, job_order_key=lambda j: (-j.prio, j.key))
    return ssn, used


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), depth=st.sampled_from([None, 1, 2, 5]))
def test_pop_sequence_matches_the_full_walk(seed, depth):
    sequences = []
    for impl in (JobsOrderByQueues, ReferenceOrder):
        rng, tree, jobs = _world(seed)
        ssn, used = _session(tree, rng)
        order = impl(ssn, jobs, depth)
        pushed_back: set[str] = set()
        seq = []
        while (job := order.pop()) is not None:
            seq.append(job.key)
            for a in tree.ancestors(job.queue):
                used[a.name] = used.get(a.name, 0) + job.size
            if job.size > 2 and job.key not in pushed_back:       # an elastic job competes again
                pushed_back.add(job.key)
                job.size -= 1
                order.push(job)
        sequences.append(seq)
    assert sequences[0] == sequences[1]


def test_only_queues_with_work_are_visited():
    """5,000 leaves, jobs in three: a pop compares only those three."""
    tree = QueueTree([open_queue("root")] + [open_queue(f"q{i:04d}", "root") for i in range(5000)])
    calls = []

    def compare(lq, rq, lj, rj):
        calls.append((lq.name, rq.name))
        return -1 if lq.name < rq.name else 1

    ssn = SimpleNamespace(queues=tree, queue_compare=compare, job_order_key=lambda j: j.key)
    jobs = [SimpleNamespace(key=f"j{k}", queue=q) for k, q in enumerate(["q4999", "q0100", "q2500"])]
    order = JobsOrderByQueues(ssn, jobs)
    assert [order.pop().queue for _ in range(3)] == ["q0100", "q2500", "q4999"]
    assert order.pop() is None
    assert {n for pair in calls for n in pair} <= {"q0100", "q2500", "q4999"}
