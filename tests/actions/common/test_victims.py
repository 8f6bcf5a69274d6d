"""VictimsOrderByQueues against the walk over the whole queue tree it replaced: on random
clusters, for random sets of victim queues, acceptance filters and push-backs, the victims
come out in the same order while only the paths to the given queues are visited."""
from __future__ import annotations

import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions.common.victims import VictimCandidates, VictimsOrderByQueues, tasks_to_evict
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.simulator import build_state
from kai.sim.synthetic import mixed_cluster
from tests.actions.common.test_shared_walk import _backlog, _churn


class WholeTreeOrder(VictimsOrderByQueues):
    """Every child of every queue asked at every pop (the order before the busy paths)."""

    def __init__(self, cands, queues, accept) -> None:
        super().__init__(cands, queues, accept)
        self.roots = [q.name for q in self.tree.roots() if self._has_leaf_under(q.name)]

    def _has_leaf_under(self, name: str) -> bool:
        q = self.tree.get(name)
        if q is None:
            return False
        if q.is_leaf:
            return name in self.active
        return any(self._has_leaf_under(c) for c in q.children)

    def _head(self, name):
        q = self.tree.get(name)
        if q is None:
            return None
        if q.is_leaf:
            return super()._head(name)
        best = self._worst_child(q.children)
        return best[1] if best else None

    def pop_chunk(self):
        worst = self._worst_child(self.roots)
        if worst is None:
            return None
        q = worst[0]
        while not q.is_leaf:
            q = self._worst_child(q.children)[0]
        job = heapq.heappop(self.heaps[q.name])[2]
        return job, tasks_to_evict(job, self.ssn.task_order_key)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_victim_order_matches_the_whole_tree_walk(seed):
    rng = random.Random(seed)
    state = build_state(mixed_cluster(seed, rng.randint(3, 8), rng.randint(20, 60)))
    nodes = sorted(state.nodes.by_name)
    for p in list(state.pods.values()):            # run more of them, so there are victims
        if not p.node_name and rng.random() < 0.6:
            state.assume_bound(p, rng.choice(nodes))
    ssn = Scheduler(state, default_config()).open_session(RecordingCache(state))
    cands = VictimCandidates(ssn)
    names = sorted(cands.jobs)
    for _ in range(4):
        queues = rng.sample(names, rng.randint(0, len(names))) if names else []
        drop = {k for q in queues for j in cands.jobs[q] for k in [j.key] if rng.random() < 0.2}
        seqs = []
        for impl in (VictimsOrderByQueues, WholeTreeOrder):
            order = impl(cands, queues, lambda v, drop=drop: v.key not in drop)
            again = random.Random(seed)
            seq, pushed = [], set()
            while (got := order.pop_chunk()) is not None:
                job, tasks = got
                seq.append((job.key, [t.key for t in tasks]))
                if job.key not in pushed and again.random() < 0.3:
                    pushed.add(job.key)
                    order.push_back(job)
            seqs.append(seq)
        assert seqs[0] == seqs[1]
        checked[0] += len(seqs[0])


checked = [0]


def test_candidates_are_shared_until_an_allocation_event():
    state = build_state(mixed_cluster(4, 5, 40))
    nodes = sorted(state.nodes.by_name)
    for i, p in enumerate(list(state.pods.values())):
        if not p.node_name and i % 2:
            state.assume_bound(p, nodes[i % len(nodes)])
    ssn = Scheduler(state, default_config()).open_session(RecordingCache(state))
    first = VictimCandidates.of(ssn)
    assert first.jobs and VictimCandidates.of(ssn) is first
    fresh = VictimCandidates(ssn)
    assert {q: [j.key for j in js] for q, js in fresh.jobs.items()} == \
        {q: [j.key for j in js] for q, js in first.jobs.items()}
    ssn.alloc_events += 1
    assert VictimCandidates.of(ssn) is not first


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_the_kept_victim_index_lists_what_a_fresh_collection_lists(seed):
    """Cycle after cycle, with the informers' churn between them, the VictimIndex kept across
    sessions gives the candidates (queues, order) that collecting them afresh gives."""
    state = _backlog(seed)
    rng = random.Random(seed)
    sched = Scheduler(state, default_config())
    for cycle in range(3):
        ssn = sched.open_session(RecordingCache(state), now=1_000.0 + cycle)
        kept, fresh = VictimCandidates.of(ssn), VictimCandidates(ssn)
        assert {q: [j.key for j in js] for q, js in kept.jobs.items()} == \
            {q: [j.key for j in js] for q, js in fresh.jobs.items()}
        assert kept.keys == fresh.keys
        ssn.close()
        sched.run_cycle(RecordingCache(state), now=1_000.0 + cycle)
        _churn(state, rng, cycle)
