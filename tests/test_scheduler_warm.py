"""kai.scheduler: ``Scheduler.warm`` brings what the Scheduler keeps across cycles up to date,
decides nothing, and changes no decision of the cycles after it."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.api import constants as C
from kai.config import default_config, parse_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import make_pod
from tests.actions.common.test_lookalike import _backlog, _decisions, _pg


def _gang(state, name: str, queue: str, node: str, running: int, min_member: int) -> None:
    """A gang of ``min_member`` with ``running`` pods on ``node`` (stale when fewer)."""
    state.upsert_podgroup(_pg(name, queue, "train", min_member=min_member))
    for i in range(running):
        state.upsert_pod(make_pod(f"{name}-{i}", "ns", name, 0, cpu="100m", mem="1Gi", node=node))


def _change(state, rng: random.Random, step: int) -> None:
    """The same random changes, given the same ``rng`` state: a new pending job, a pending
    pod deleted, a gang losing a member (stale, evicted once its grace period is over)."""
    queues = sorted(q for q in state.queues if q.startswith("q"))
    queue = rng.choice(queues)
    state.upsert_podgroup(_pg(f"late{step}", queue, rng.choice(["train", "build", "inference"])))
    state.upsert_pod(make_pod(f"late{step}-0", "ns", f"late{step}", rng.choice([1, 2]), cpu="1", mem="4Gi",
                              created=100 + step))
    pending = sorted(p.uid for p in state.pods.values() if p.status == C.PodStatus.PENDING)
    if pending:
        state.delete_pod(rng.choice(pending))
    gangs = sorted(k for k in state.jobs if k.startswith("ns/gang"))
    if gangs:
        job = state.jobs[rng.choice(gangs)]
        if job.tasks:
            state.delete_pod(sorted(job.tasks)[0])


#: FGD placement with a decayed workload history (kept from cycle to cycle)
FGD = {"actions": "allocate, reclaim", "tiers": [{"plugins": [
    {"name": "predicates"}, {"name": "proportion"}, {"name": "gpupack"}, {"name": "priority"},
    {"name": "nodeplacement", "arguments": {"gpu": "fgd", "cpu": "fgd", "fgdDecay": 0.5}}]}]}


def _cycles(seed: int, warm: bool, actions: str | dict | None) -> list:
    config = (default_config() if actions is None else
              parse_config(actions if isinstance(actions, dict) else {"actions": actions}))
    state = _backlog(seed)
    node = next(iter(state.nodes.by_name))
    first = sorted(q for q in state.queues if q.startswith("q"))[0]
    _gang(state, "gang-a", first, node, 2, 2)
    _gang(state, "gang-b", first, node, 1, 2)         # stale from the start
    sched = Scheduler(state, config)
    rng = random.Random(seed)
    out = []
    for step in range(4):
        if warm:
            before = (state.change_seq, {u: (p.status, p.node_name) for u, p in state.pods.items()})
            sched.warm(now=1_000.0 + 100 * step)
            # decides nothing: no pod moved, no job changed
            assert before == (state.change_seq, {u: (p.status, p.node_name) for u, p in state.pods.items()})
        out.append(_decisions(sched.run_cycle(RecordingCache(state), now=1_000.0 + 100 * step)))
        _change(state, rng, step)
    return out


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10**6), actions=st.sampled_from([None, "allocate", "allocate, reclaim",
                                                            "allocate, preempt, stalegangeviction", FGD]))
def test_cycles_after_a_warm_decide_as_cycles_without_one(seed, actions):
    """Random backlogs, a gang that goes stale, jobs added and pods deleted between cycles:
    with a warm before every cycle, each cycle decides what it decides without one (bindings,
    pipelined pods, evictions, unschedulable explanations), every default action or a few, or
    FGD placement with a decayed history."""
    assert _cycles(seed, True, actions) == _cycles(seed, False, actions)


def test_warm_fills_what_the_configured_actions_keep():
    state = _backlog(7)
    sched = Scheduler(state, default_config())
    memory = sched.memory
    assert memory.pending_index is None and memory.victim_index is None and memory.stale_watch is None
    assert sched.warm() >= 0.0
    assert memory.pending_index is not None and memory.victim_index is not None
    assert memory.stale_watch is not None and memory.proportion_jobs is not None
    assert memory.cycles == 0                          # not a cycle

    alone = Scheduler(state, parse_config({"actions": "allocate"}))
    alone.warm()
    assert alone.memory.pending_index is not None       # allocate's capacity pass reads it
    assert alone.memory.victim_index is None and alone.memory.stale_watch is None


def test_a_warm_watch_holds_the_stale_and_timestamped_jobs_only():
    state = _backlog(3)
    node = next(iter(state.nodes.by_name))
    queue = sorted(q for q in state.queues if q.startswith("q"))[0]
    _gang(state, "gang-whole", queue, node, 2, 2)
    _gang(state, "gang-short", queue, node, 1, 2)
    state.jobs["ns/gang-whole"].stale_since = 500.0     # was stale: its timestamp is to clear
    sched = Scheduler(state, parse_config({"actions": "stalegangeviction"}))
    sched.warm(now=1_000.0)
    assert sched.memory.stale_watch.keys == {"ns/gang-whole", "ns/gang-short"}
    assert state.jobs["ns/gang-short"].stale_since == 0.0           # warm records nothing
    sched.run_cycle(RecordingCache(state), now=1_000.0)
    assert state.jobs["ns/gang-whole"].stale_since == 0.0
    assert state.jobs["ns/gang-short"].stale_since == 1_000.0


def test_a_warm_is_not_a_cycle_of_fgds_decayed_history():
    state = _backlog(11)
    sched = Scheduler(state, parse_config(FGD))
    sched.run_cycle(RecordingCache(state), now=1_000.0)
    history = dict(sched.memory.fgd_history)
    assert history
    sched.warm(now=1_100.0)
    assert sched.memory.fgd_history == history
