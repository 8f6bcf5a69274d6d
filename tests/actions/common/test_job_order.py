"""JobsOrderByQueues against the plain walk it replaced: every child of every queue asked at
every pop, leaves as heaps. Random queue trees, job sets, depth limits, push-backs and a queue
order that moves with the pops that place something (as fair share does, announced by the
session's ``alloc_events``) must give the same pop sequence; pops that place nothing reuse the
cached picks off the popped leaf's path."""
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


def _session(tree, rng, view: bool = False, total: bool = False, path_local: bool = False):
    used: dict[str, int] = {}      # grows as jobs pop: the order moves like fair share does
    weight = {name: rng.randint(1, 3) for name in tree.queues}

    def compare(lq, rq, lj, rj):
        lk = (used.get(lq.name, 0) * weight[lq.name] + lj.size, -lj.prio, lq.name)
        rk = (used.get(rq.name, 0) * weight[rq.name] + rj.size, -rj.prio, rq.name)
        return -1 if lk < rk else 1

    ssn = SimpleNamespace(queues=tree, queue_compare=compare, job_order_key=lambda j: (-j.prio, j.key),
                          alloc_events=0)
    if view:        # what ``compare`` reads from a head job: picks carry over equal views
        ssn.queue_job_view = lambda j: (j.size, j.prio)
    if total:       # a key comparison with the name last: a strict total order
        ssn.queue_order_total = lambda queues: True
    if path_local:  # a queue's key reads its own ``used`` only: events move their paths
        ssn.queue_order_path_local = True
        ssn.event_queues = []
    return ssn, used


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), depth=st.sampled_from([None, 1, 2, 5]), view=st.booleans(),
       total=st.booleans(), path_local=st.sampled_from([False, True, "with unknown events"]))
def test_pop_sequence_matches_the_full_walk(seed, depth, view, total, path_local):
    """``path_local``: the session names each event's queue (``ssn.event_queues``), and the
    walk re-asks only the moved paths after an event (an unknown queue, None, drops every
    pick); the placed job's own queue does not always move (a refused job, a victim
    elsewhere)."""
    sequences = []
    for impl in (JobsOrderByQueues, ReferenceOrder):
        rng, tree, jobs = _world(seed)
        ssn, used = _session(tree, rng, view, total, path_local=bool(path_local))
        log = ssn.event_queues.append if path_local else (lambda name: None)
        order = impl(ssn, jobs, depth)
        placing = random.Random(seed + 1)
        pushed_back: set[str] = set()
        seq = []
        while (job := order.pop()) is not None:
            seq.append(job.key)
            if placing.random() < 0.4:
                continue                                # nothing placed: the order stands still
            elsewhere_only = placing.random() < 0.3     # the job placed nothing; another queue moved
            if not elsewhere_only:
                for a in tree.ancestors(job.queue):
                    used[a.name] = used.get(a.name, 0) + job.size
                log(job.queue)
            if elsewhere_only or placing.random() < 0.5:     # a victim elsewhere gave way (reclaim)
                victim = placing.choice(sorted(tree.queues))
                for a in tree.ancestors(victim):
                    used[a.name] = used.get(a.name, 0) - 1
                log(victim)
            if path_local == "with unknown events" and placing.random() < 0.2:
                log(None)
            ssn.alloc_events += 1
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

    ssn = SimpleNamespace(queues=tree, queue_compare=compare, job_order_key=lambda j: j.key, alloc_events=0)
    jobs = [SimpleNamespace(key=f"j{k}", queue=q) for k, q in enumerate(["q4999", "q0100", "q2500"])]
    order = JobsOrderByQueues(ssn, jobs)
    assert [order.pop().queue for _ in range(3)] == ["q0100", "q2500", "q4999"]
    assert order.pop() is None
    assert {n for pair in calls for n in pair} <= {"q0100", "q2500", "q4999"}


def test_pops_that_place_nothing_compare_along_one_path():
    """40 departments of 25 leaves, 2 jobs each, and no allocation event between pops (every
    job held back, as in a backlog over quota): each pop recomputes the popped leaf's
    department and the roots' pick, not every department; same sequence as the full walk."""
    queues = [open_queue("root")] + [open_queue(f"d{d:02d}", "root") for d in range(40)]
    queues += [open_queue(f"d{d:02d}-q{i:02d}", f"d{d:02d}") for d in range(40) for i in range(25)]
    tree = QueueTree(queues)
    calls = [0]

    def compare(lq, rq, lj, rj):
        calls[0] += 1
        return -1 if (lj.key, lq.name) < (rj.key, rq.name) else 1

    seqs = []
    for impl in (JobsOrderByQueues, ReferenceOrder):
        ssn = SimpleNamespace(queues=tree, queue_compare=compare, job_order_key=lambda j: j.key, alloc_events=0)
        leaves = [q.metadata.name for q in queues if tree.get(q.metadata.name).is_leaf]
        jobs = [SimpleNamespace(key=f"j{(k * 7919) % 2000:04d}", queue=leaves[k % len(leaves)]) for k in range(2000)]
        calls[0] = 0
        order = JobsOrderByQueues(ssn, jobs) if impl is JobsOrderByQueues else ReferenceOrder(ssn, jobs)
        seqs.append([job.key for job in iter(order.pop, None)])
        if impl is JobsOrderByQueues:
            assert calls[0] < 2000 * (40 + 25)          # the full walk: ~1,040 a pop
    assert seqs[0] == seqs[1] and len(seqs[0]) == 2000


def _held_backlog_runs(depts: int, per_dept: int, jobs, variants):
    """Pop a held backlog (no allocation events) under each session variant (attributes set on
    the session, e.g. ``queue_job_view``; None: the full-walk ReferenceOrder) over ``depts``
    departments of ``per_dept`` leaves; ``jobs(leaves)`` makes the jobs afresh for each run.
    Returns each run's pop sequence and its number of comparisons."""
    queues = [open_queue("root")] + [open_queue(f"d{d:02d}", "root") for d in range(depts)]
    queues += [open_queue(f"d{d:02d}-q{i:02d}", f"d{d:02d}") for d in range(depts) for i in range(per_dept)]
    tree = QueueTree(queues)
    leaves = [q.metadata.name for q in queues if tree.get(q.metadata.name).is_leaf]
    calls = [0]

    def compare(lq, rq, lj, rj):
        calls[0] += 1
        return -1 if (lj.size, lq.name) < (rj.size, rq.name) else 1

    seqs, counts = [], []
    for attrs in variants:
        ssn = SimpleNamespace(queues=tree, queue_compare=compare, job_order_key=lambda j: j.key, alloc_events=0,
                              **(attrs or {}))
        calls[0] = 0
        order = JobsOrderByQueues(ssn, jobs(leaves)) if attrs is not None else ReferenceOrder(ssn, jobs(leaves))
        seqs.append([job.key for job in iter(order.pop, None)])
        counts.append(calls[0])
    return seqs, counts


def test_pops_of_look_alike_jobs_carry_the_picks():
    """A held backlog of jobs that look the same to the queue order (same job view): a pop
    that places nothing carries every pick over to the leaf's next job, so the comparisons
    happen when a leaf runs out, not at every pop; the sequence is the full walk's."""
    seqs, counts = _held_backlog_runs(
        10, 10, lambda leaves: [SimpleNamespace(key=f"j{k:04d}", queue=leaves[k % 100], size=1 + (k // 100) // 15)
                                for k in range(2000)],
        [{"queue_job_view": lambda j: j.size}, {}, None])
    assert seqs[0] == seqs[1] == seqs[2] and len(seqs[0]) == 2000
    # 100 leaves, 2 views each: picks are recomputed ~2 times a leaf, not 20
    assert counts[0] * 4 < counts[1]


def test_a_leaf_running_out_costs_a_few_comparisons_under_a_total_order():
    """20 departments of 30 leaves, every job held back (no allocation events), every leaf
    with a different look: under a total order each department keeps its leaves sorted, so a
    leaf running out is taken off the list instead of walking the other 29 again."""
    view = {"queue_job_view": lambda j: j.size}
    seqs, counts = _held_backlog_runs(
        20, 30, lambda leaves: [SimpleNamespace(key=f"j{k:04d}", queue=leaves[k % 600], size=(k * 37) % 11)
                                for k in range(3000)],
        [{**view, "queue_order_total": lambda qs: True}, view, None])
    assert seqs[0] == seqs[1] == seqs[2] and len(seqs[0]) == 3000
    assert counts[0] * 2 < counts[1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), depts=st.integers(1, 4), per_dept=st.integers(8, 20),
       sizes=st.integers(1, 3))
def test_leaves_running_out_under_sorted_parents_keep_the_full_walks_sequence(seed, depts, per_dept, sizes):
    """Held backlogs over departments wide enough to be kept sorted, with few distinct job
    views, so a leaf that runs out often hands its department over to a sibling whose head
    looks the same (the department keeps its place above): same sequence as the full walk."""
    rng = random.Random(seed)
    n_leaves = depts * per_dept
    specs = [(rng.randrange(n_leaves), rng.randint(1, sizes)) for _ in range(rng.randint(n_leaves, 6 * n_leaves))]

    def jobs(leaves):
        return [SimpleNamespace(key=f"j{k:04d}", queue=leaves[q], size=s) for k, (q, s) in enumerate(specs)]

    view = {"queue_job_view": lambda j: j.size}
    seqs, counts = _held_backlog_runs(depts, per_dept, jobs,
                                      [{**view, "queue_order_total": lambda qs: True}, view, None])
    assert seqs[0] == seqs[1] == seqs[2] and len(seqs[0]) == len(specs)


def _alike(a, b) -> bool:
    return a.size == b.size and a.prio == b.prio and a.queue == b.queue


def _walk(order, rng, used, ssn, tree, event_at=None):
    """Pop to the end; after a pop, sometimes pass over its look-alikes; at pop number
    ``event_at`` an allocation moves the order (as a placement would)."""
    seq = []
    while (job := order.pop()) is not None:
        seq.append(job.key)
        if event_at is not None and len(seq) == event_at:
            for a in tree.ancestors(job.queue):
                used[a.name] = used.get(a.name, 0) + job.size
            ssn.alloc_events += 1
        elif rng.random() < 0.5:
            seq.append(("skip", order.skip_alike(job, _alike)))
    return seq


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), total=st.booleans(), event=st.booleans())
def test_a_replayed_walk_pops_as_a_live_one(seed, total, event):
    """A walk that ran out with no allocation event records its pops; a second walk over the
    same lists replays them whatever it passes over, and from an allocation event on picks
    live: the same sequence as a live walk given the same skips and the same event."""
    rng, tree, jobs = _world(seed)
    ssn, used = _session(tree, rng, view=True, total=total)
    first = JobsOrderByQueues(ssn, jobs)
    _walk(first, random.Random(seed), used, ssn, tree)
    assert first.trace_complete
    leaves = dict(first.leaves)                    # as sorted at construction (nothing pushed)
    event_at = random.Random(seed + 2).randint(1, max(len(jobs), 1)) if event else None
    seqs = []
    for replay in (first.trace, None):
        rng2, tree2, _ = _world(seed)
        ssn2, used2 = _session(tree2, rng2, view=True, total=total)
        order = JobsOrderByQueues(ssn2, [], sorted_leaves=leaves, replay=replay)
        seqs.append(_walk(order, random.Random(seed + 1), used2, ssn2, tree2, event_at))
    assert seqs[0] == seqs[1]


def test_a_path_local_event_re_asks_its_path_only():
    """Fifty departments of ten leaves; a placement in one leaf costs the comparisons along
    its path, not a walk over every department again."""
    queues = [open_queue(f"d{d}") for d in range(50)] + \
        [open_queue(f"d{d}-q{q}", f"d{d}") for d in range(50) for q in range(10)]
    tree = QueueTree(queues)
    jobs = [SimpleNamespace(key=f"d{d}-q{q}-{k}", queue=f"d{d}-q{q}", prio=0, size=1)
            for d in range(50) for q in range(10) for k in range(3)]
    counts = {}
    for local in (True, False):
        rng = random.Random(3)
        ssn, used = _session(tree, rng, view=True, total=True, path_local=local)
        calls = [0]
        compare = ssn.queue_compare

        def counted(*a, compare=compare, calls=calls):
            calls[0] += 1
            return compare(*a)
        ssn.queue_compare = counted
        order = JobsOrderByQueues(ssn, [SimpleNamespace(**vars(j)) for j in jobs])
        popped = []
        while (job := order.pop()) is not None:
            popped.append(job.key)
            for a in tree.ancestors(job.queue):
                used[a.name] = used.get(a.name, 0) + job.size
            if local:
                ssn.event_queues.append(job.queue)
            ssn.alloc_events += 1
        counts[local] = (calls[0], popped)
    assert counts[True][1] == counts[False][1] and len(counts[True][1]) == len(jobs)
    assert counts[True][0] * 3 < counts[False][0]
