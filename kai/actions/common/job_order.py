"""JobsOrderByQueues: pop jobs in queue-fair order down the queue tree (KAI's iteration).

Leaf queues hold their jobs sorted by the session's job order; at each level the child
whose best pending job compares first under the session's queue order wins. Popped jobs
that still have work (elastic extras) are pushed back and compete again.
"""
from __future__ import annotations

import heapq
import itertools

from kai.api.podgroup_info import PodGroupInfo


class JobsOrderByQueues:
    def __init__(self, ssn, jobs: list[PodGroupInfo], depth: int | None = None) -> None:
        self.ssn = ssn
        self.tree = ssn.queues
        self._counter = itertools.count()
        self.leaves: dict[str, list] = {}
        self.depth = depth
        self.popped: dict[str, int] = {}
        for job in jobs:
            self.push(job)

    def push(self, job: PodGroupInfo) -> None:
        heap = self.leaves.setdefault(job.queue, [])
        heapq.heappush(heap, (self.ssn.job_order_key(job), next(self._counter), job))

    def _head(self, queue: str) -> PodGroupInfo | None:
        """Best job under ``queue`` (leaf: its heap top; inner: best child's head)."""
        q = self.tree.get(queue)
        if q is None:
            return None
        if q.is_leaf:
            heap = self.leaves.get(queue)
            if not heap:
                return None
            if self.depth is not None and self.popped.get(queue, 0) >= self.depth:
                return None
            return heap[0][2]
        best = self._best_child(q.children)
        return best[1] if best else None

    def _best_child(self, names: list[str]):
        best = None
        for name in names:
            head = self._head(name)
            if head is None:
                continue
            cand = (self.tree.get(name), head)
            if best is None or self.ssn.queue_compare(cand[0], best[0], cand[1], best[1]) < 0:
                best = cand
        return best

    def pop(self) -> PodGroupInfo | None:
        best = self._best_child([q.name for q in self.tree.roots()])
        if best is None:
            return None
        queue = best[0]
        while not queue.is_leaf:
            queue = self._best_child(queue.children)[0]
        heap = self.leaves[queue.name]
        self.popped[queue.name] = self.popped.get(queue.name, 0) + 1
        return heapq.heappop(heap)[2]

    def __iter__(self):
        while True:
            job = self.pop()
            if job is None:
                return
            yield job
