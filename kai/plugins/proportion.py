"""proportion: queue fair share, queue order and capacity checks (KAI's proportion plugin).

This first version enforces queue limits (OverLimit) and non-preemptible in-quota use
(NonPreemptibleOverQuota) for the leaf and every ancestor, and keeps per-queue allocation
in sync through the session's allocate/deallocate handlers.
"""
from __future__ import annotations

import numpy as np

from kai.api import constants as C
from kai.api.resources import CPU, GPU, MEMORY
from kai.framework.plugin import Plugin, register_plugin

_COLS = (GPU, CPU, MEMORY)
_NAMES = ("gpu", "cpu", "memory")
_UNITS = (1.0, 1.0, 1.0)


def quota_vector(task) -> np.ndarray:
    """A task's [gpu, cpu millicores, memory bytes] as counted in queue quota."""
    r = task.req
    return np.array([task.gpu_quota, r[CPU], r[MEMORY]])


def _fmt(i: int, v: float) -> str:
    if i == 2:
        return f"{v / 1e6:g}MB"
    if i == 1:
        return f"{v:g}m"
    return f"{v:g}"


@register_plugin
class Proportion(Plugin):
    name = "proportion"

    def on_session_open(self, ssn) -> None:
        tree = ssn.queues
        self.allocated = {name: np.zeros(3) for name in tree.queues}
        self.allocated_np = {name: np.zeros(3) for name in tree.queues}
        for job in ssn.jobs.values():
            if job.queue not in tree:
                continue
            for t in job.tasks.values():
                if t.status & C.ALLOCATED:
                    self._add(tree, job, t, 1.0)

        def on_alloc(task):
            job = ssn.jobs.get(task.job_key)
            if job is not None and job.queue in tree:
                self._add(tree, job, task, 1.0)

        def on_dealloc(task):
            job = ssn.jobs.get(task.job_key)
            if job is not None and job.queue in tree:
                self._add(tree, job, task, -1.0)

        def over_capacity(job, tasks):
            if job.queue not in tree:
                return None
            req = sum((quota_vector(t) for t in tasks), np.zeros(3))
            for q in tree.ancestors(job.queue):
                alloc = self.allocated[q.name]
                for i in range(3):
                    lim = q.limit[i]
                    if req[i] > 0 and lim != -1 and alloc[i] + req[i] > lim + 1e-9:
                        return (f"OverLimit: queue {q.name!r} would use {_fmt(i, alloc[i] + req[i])} "
                                f"{_NAMES[i]}, above its limit {_fmt(i, lim)}")
                if not job.preemptible:
                    anp = self.allocated_np[q.name]
                    for i in range(3):
                        d = q.deserved[i]
                        if req[i] > 0 and d != -1 and anp[i] + req[i] > d + 1e-9:
                            return (f"NonPreemptibleOverQuota: non-preemptible job would bring queue {q.name!r} "
                                    f"to {_fmt(i, anp[i] + req[i])} {_NAMES[i]}, above its quota {_fmt(i, d)}")
            return None

        ssn.allocate_handlers.append(on_alloc)
        ssn.deallocate_handlers.append(on_dealloc)
        ssn.is_job_over_capacity_fns.append(over_capacity)
        ssn.queue_allocated = self.allocated
        from kai.plugins.proportion_reclaim import register_reclaim_hooks; register_reclaim_hooks(ssn, self)  # noqa: E702,I001

    def _add(self, tree, job, task, sign: float) -> None:
        v = quota_vector(task) * sign
        for q in tree.ancestors(job.queue):
            self.allocated[q.name] += v
            if not job.preemptible:
                self.allocated_np[q.name] += v
