"""minruntime: protect recently started jobs from preemption and reclaim (KAI's minruntime plugin).

Arguments (Go durations): ``defaultPreemptMinRuntime``, ``defaultReclaimMinRuntime`` (default
0 = no protection), and ``reclaimResolveMethod``: ``lca`` (default) or ``queue``.

The min runtime of a victim comes from its queue path (``QueueInfo.preempt_min_runtime`` /
``reclaim_min_runtime``, seconds; the nearest queue that sets it, walking up), else the
plugin default:

- preempt: from the victim's leaf queue upward;
- reclaim, ``queue``: from the victim's leaf queue upward;
- reclaim, ``lca``: from the child of the reclaimer's and victim's lowest common ancestor
  on the victim's side, upward.

A victim is protected while ``job.last_start + min_runtime > ssn.now``. Registered hooks:

- victim filters ``fn(ssn, preemptor, victim) -> bool``: a protected non-elastic victim is
  filtered out; an elastic one passes;
- scenario validators ``fn(ssn, preemptor, victims: dict[job_key, list[PodInfo]]) -> bool``:
  reject a scenario that takes a protected elastic victim below its minimum (some PodSet's
  active allocated count under ``minAvailable``).
"""
from __future__ import annotations

from kai.api.queue_info import parse_duration
from kai.framework.plugin import Plugin, label_blind, register_plugin


@register_plugin
class MinRuntime(Plugin):
    name = "minruntime"

    def __init__(self, arguments=None) -> None:
        super().__init__(arguments)
        self.default_preempt = parse_duration(self.arguments.get("defaultPreemptMinRuntime")) or 0.0
        self.default_reclaim = parse_duration(self.arguments.get("defaultReclaimMinRuntime")) or 0.0
        method = str(self.arguments.get("reclaimResolveMethod", "lca") or "lca").lower()
        self.resolve_method = method if method in ("lca", "queue") else "lca"

    # ------------------------------------------------------------------ resolution
    @staticmethod
    def _walk_up(tree, start: str, field: str, default: float) -> float:
        for q in tree.ancestors(start):
            v = getattr(q, field)
            if v is not None:
                return v
        return default

    def preempt_min_runtime(self, ssn, victim) -> float:
        return self._walk_up(ssn.queues, victim.queue, "preempt_min_runtime", self.default_preempt)

    def reclaim_min_runtime(self, ssn, reclaimer, victim) -> float:
        tree = ssn.queues
        start = victim.queue
        if self.resolve_method == "lca":
            pr = {q.name for q in tree.ancestors(reclaimer.queue)}
            below = victim.queue
            for q in tree.ancestors(victim.queue):
                if q.name in pr:
                    start = below
                    break
                below = q.name
            else:
                start = below             # no common ancestor: the victim's root
        return self._walk_up(tree, start, "reclaim_min_runtime", self.default_reclaim)

    @staticmethod
    def _protected(ssn, victim, min_runtime: float) -> bool:
        return min_runtime > 0 and victim.last_start > 0 and victim.last_start + min_runtime > ssn.now

    # ------------------------------------------------------------------ hooks
    def on_session_open(self, ssn) -> None:
        # every hook here reads the victims' runtimes and the queues, never the preemptor's pods
        @label_blind
        def preempt_filter(ssn_, preemptor, victim) -> bool:
            return victim.is_elastic() or not self._protected(ssn, victim, self.preempt_min_runtime(ssn, victim))

        @label_blind
        def reclaim_filter(ssn_, reclaimer, victim) -> bool:
            return victim.is_elastic() or not self._protected(
                ssn, victim, self.reclaim_min_runtime(ssn, reclaimer, victim))

        def validator(resolve):
            @label_blind
            def check(ssn_, preemptor, victims) -> bool:
                for key in victims:
                    v = ssn.jobs.get(key)
                    if v is None or not v.is_elastic():
                        continue
                    if v.is_gang_satisfied():
                        continue
                    if self._protected(ssn, v, resolve(preemptor, v)):
                        return False
                return True
            return check

        ssn.preempt_victim_filter_fns.append(preempt_filter)
        ssn.reclaim_victim_filter_fns.append(reclaim_filter)
        ssn.preempt_scenario_validator_fns.append(validator(lambda p, v: self.preempt_min_runtime(ssn, v)))
        ssn.reclaim_scenario_validator_fns.append(validator(lambda p, v: self.reclaim_min_runtime(ssn, p, v)))
