"""LoneAnswers: a look-alike class's "nothing to add" is kept and reused only where asking every
job's hooks gives the same decisions; a hook without the contract, a constrained pod or a moved
predicate epoch means asking again."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions.allocate import Allocate
from kai.actions.common import lone_answers as memo_mod
from kai.actions.common.lone_answers import lone_answers
from kai.api.k8s import (Affinity, ContainerPort, LabelSelector, NodeAffinity, NodeSelectorRequirement,
                         NodeSelectorTerm, PodAffinity, PodAffinityTerm, PreferredSchedulingTerm)
from kai.cache.cluster_state import ClusterState
from kai.config import default_config, parse_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import make_pod, open_queue, synthetic_nodes
from tests.actions.common.test_lookalike import _pg

HOST = "kubernetes.io/hostname"


def _anti(app: str) -> Affinity:
    return Affinity(pod_anti_affinity=PodAffinity(required_during_scheduling_ignored_during_execution=[
        PodAffinityTerm(label_selector=LabelSelector(match_labels={"app": app}), topology_key=HOST)]))


def _preferred_zone(zone: str) -> Affinity:
    return Affinity(node_affinity=NodeAffinity(preferred_during_scheduling_ignored_during_execution=[
        PreferredSchedulingTerm(weight=10, preference=NodeSelectorTerm(match_expressions=[
            NodeSelectorRequirement(key="topology.kubernetes.io/zone", operator="In", values=[zone])]))]))


#: pod classes: (name, how a copy is made); copies of one class are look-alikes
def _shape(pod, kind: str):
    if kind == "labelled":
        pod.metadata.labels = {"app": "web"}
    elif kind == "anti":                           # carries an anti-affinity term against "web"
        pod.metadata.labels = {"app": "guard"}
        pod.spec.affinity = _anti("web")
    elif kind == "preferred":
        pod.spec.affinity = _preferred_zone("zone-1")
    elif kind == "port":
        pod.spec.containers[0].ports = [ContainerPort(container_port=80, host_port=8080)]
    elif kind == "zone":
        pod.spec.node_selector = {"topology.kubernetes.io/zone": "zone-2"}
    elif kind == "job":                            # a single-pod Job's pod: labels of its own
        group = pod.metadata.annotations["pod-group-name"]
        pod.metadata.labels = {"job-name": group, "controller-uid": f"uid-{group}"}
    elif kind == "job-anti":                       # keeps two of those Jobs' pods apart
        pod.metadata.labels = {"app": "guard-jobs"}
        pod.spec.affinity = Affinity(pod_anti_affinity=PodAffinity(
            required_during_scheduling_ignored_during_execution=[PodAffinityTerm(
                label_selector=LabelSelector(match_labels={"job-name": "j01"}), topology_key=HOST)]))
    return pod


KINDS = ["plain", "plain", "labelled", "anti", "preferred", "port", "zone", "big", "job", "job", "job-anti"]


def _state(seed: int, running: bool) -> ClusterState:
    """A few nodes, two queues, and single-pod jobs drawn from a handful of classes (some
    running, for the actions that evict), in random order."""
    rng = random.Random(seed)
    nodes = synthetic_nodes(rng.randint(2, 6), seed=seed, cpu_only_share=0.0, tainted_share=0.0)
    queues = [open_queue("root"), open_queue("a", "root", gpu_quota=rng.choice([-1, 4, 8])),
              open_queue("b", "root", gpu_quota=rng.choice([-1, 2, 8]))]
    pgs, pods = [], []
    for j in range(rng.randint(4, 40)):
        kind = rng.choice(KINDS)
        group = f"j{j:02d}"
        queue = rng.choice(["a", "b"])
        pgs.append(_pg(group, queue, rng.choice(["train", "train", "build", "inference"])))
        node = ""
        if running and rng.random() < 0.3:
            node = nodes[rng.randrange(len(nodes))].metadata.name
        gpus = 16 if kind == "big" else rng.choice([1, 1, 2])
        pods.append(_shape(make_pod(f"{group}-0", "ns", group, gpus, cpu="1", mem="4Gi", node=node,
                                    created=rng.randrange(50)), kind))
    state = ClusterState()
    state.load(nodes, pgs, pods, queues=queues)
    return state


def _decide(seed: int, running: bool, config, use_memo: bool, cycles: int = 2):
    memo_mod.USE_MEMO = use_memo
    try:
        state = _state(seed, running)
        sched = Scheduler(state, config)
        out = []
        for c in range(cycles):
            r = sched.run_cycle(RecordingCache(state), now=1_000.0 + c)
            out.append(([(d.pod, d.node, d.action) for d in r.bindings],
                        [(d.pod, d.node) for d in r.pipelined], [d.pod for d in r.evictions],
                        sorted(r.unschedulable.items())))
        return out
    finally:
        memo_mod.USE_MEMO = True


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10**6), running=st.booleans(), every_action=st.booleans())
def test_kept_answers_decide_as_asking_every_job(seed, running, every_action):
    config = default_config() if every_action else parse_config({"actions": "allocate"})
    assert _decide(seed, running, config, True) == _decide(seed, running, config, False)


def _session(state):
    sched = Scheduler(state, parse_config({"actions": "allocate"}))
    return sched.open_session(RecordingCache(state), now=1_000.0)


def test_only_classes_nothing_constrains_are_kept():
    state = _state(7, running=False)
    ssn = _session(state)
    Allocate().execute(ssn)
    memo = lone_answers(ssn)
    assert memo.usable and memo.answers
    for job in state.jobs.values():
        task = job.lone_task()
        got = memo.answers.get(memo.class_key(job, task))
        if got is not None and got.epoch == ssn.predicate_epoch():
            assert not ssn.predicates_for(task)
            assert not task.pod.spec.containers[0].ports and task.pod.metadata.labels.get("app") != "guard"


def test_a_hook_without_the_contract_turns_the_memo_off():
    ssn = _session(_state(3, running=False))
    assert lone_answers(ssn).usable
    ssn.pre_predicate_fns.append(lambda task, job: None)        # declares nothing
    ssn.action_memo.clear()
    assert not lone_answers(ssn).usable


def test_an_answer_is_not_used_after_the_predicate_epoch_moves():
    ssn = _session(_state(5, running=False))
    memo = lone_answers(ssn)
    job = next(iter(ssn.jobs.values()))
    key = memo.class_key(job, job.lone_task())
    memo.keep(key, ssn.node_mask(job.lone_task(), job))
    assert memo.get(key) is not None
    memo.answers[key].epoch = (-1, -1)          # as after a pod carrying terms was placed
    assert memo.get(key) is None


def test_the_memo_turns_itself_off_when_pods_never_look_alike():
    """Every pod different (an annotation of its own): after the trial lookups find almost
    nothing, no more look-alike keys are made this session, and the decisions are those of
    asking every job. (The keys made when the pods were filed are dropped first, so that
    the test can count the ones the session makes.)"""
    def unique_state():
        state = _state(11, running=False)
        for i, task in enumerate(t for j in state.jobs.values() for t in j.tasks.values()):
            task.pod.metadata.annotations = {**task.pod.metadata.annotations, "example.com/run": f"r{i}"}
            task.alike_key = False
        return state

    memo_mod._TRIAL, trial = 8, memo_mod._TRIAL
    try:
        state = unique_state()
        ssn = _session(state)
        Allocate().execute(ssn)
        memo = lone_answers(ssn)
        assert memo.lookups == 8 and not memo.usable
        keyed = sum(1 for j in state.jobs.values() for t in j.tasks.values() if t.alike_key is not False)
        assert keyed <= 8 + 1
    finally:
        memo_mod._TRIAL = trial


def test_pods_that_differ_only_in_labels_share_a_class_while_no_pod_carries_terms():
    """Single-pod Jobs' pods (their own ``job-name`` and ``controller-uid``) share one kept
    answer at predicate epoch (0, 0); with a hook that does not declare ``label_blind`` the
    labels stay in the key."""
    def jobs_state():
        state = ClusterState()
        pgs = [_pg(f"j{i:02d}", "a") for i in range(6)]
        pods = [_shape(make_pod(f"j{i:02d}-0", "ns", f"j{i:02d}", 1, cpu="1", mem="4Gi"), "job") for i in range(6)]
        state.load(synthetic_nodes(3, seed=1, cpu_only_share=0.0, tainted_share=0.0), pgs, pods,
                   queues=[open_queue("root"), open_queue("a", "root")])
        return state

    ssn = _session(jobs_state())
    memo = lone_answers(ssn)
    assert memo.blind and ssn.predicate_epoch() == (0, 0)
    Allocate().execute(ssn)
    assert len(memo.answers) == 1 and memo.hits == 5
    ssn = _session(jobs_state())
    ssn.node_order_fns.append(_stable_scorer)
    ssn.action_memo.clear()
    memo = lone_answers(ssn)
    assert memo.usable and not memo.blind
    Allocate().execute(ssn)
    assert len(memo.answers) == 6 and memo.hits == 0


def _stable_scorer(task, job, mask):
    return None


_stable_scorer.alike_stable = True          # keeps the look-alike contract, says nothing of labels
