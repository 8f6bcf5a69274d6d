"""kai.framework.action: the registry and the cyclic-GC pause the scheduler wraps a cycle in."""
from __future__ import annotations

import gc

from kai.framework.action import ACTIONS, cyclic_gc_paused
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler


def test_default_actions_are_registered():
    assert {"allocate", "consolidation", "reclaim", "preempt", "stalegangeviction"} <= set(ACTIONS)


def test_pause_restores_the_collector_and_nests():
    assert gc.isenabled()
    with cyclic_gc_paused():
        assert not gc.isenabled()
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()                 # the inner block leaves it to the outer one
    assert gc.isenabled()


def test_pause_ends_when_the_block_raises():
    try:
        with cyclic_gc_paused():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_a_cycle_runs_with_the_collector_paused_and_resumes_it():
    seen = []

    class Probe:
        name = "probe"

        def execute(self, ssn):
            seen.append(gc.isenabled())

    state = ClusterState()
    sched = Scheduler(state, default_config())
    sched.actions = [Probe()]
    sched.run_cycle(RecordingCache(state))
    assert seen == [False] and gc.isenabled()
