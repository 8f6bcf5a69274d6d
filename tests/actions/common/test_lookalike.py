"""Look-alike jobs: which pairs count as copies, and (end to end) that passing over copies of
a refused job in reclaim and preempt decides exactly what the full walk decides."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions.common import job_order
from kai.actions.common.lookalike import look_alike
from kai.actions.common import lookalike
from kai.api.k8s import (Affinity, EphemeralVolumeSource, LabelSelector, ObjectMeta, PodAffinity, PodAffinityTerm,
                         PodGroup, PodGroupSpec, PodResourceClaim, Queue, QueueResource, QueueResources, QueueSpec,
                         Volume)
from kai.cache.cluster_state import ClusterState
from kai.config import default_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import make_pod, open_queue, synthetic_nodes


def _pg(name: str, queue: str = "q", prio: str = "train", min_member: int = 1) -> PodGroup:
    return PodGroup(metadata=ObjectMeta(name=name, namespace="ns", uid=f"uid-{name}"),
                    spec=PodGroupSpec(min_member=min_member, queue=queue, priority_class_name=prio))


def _jobs(*pairs):
    """ClusterState jobs for (PodGroup, [pods]) pairs, by name."""
    state = ClusterState()
    pgs = [pg for pg, _ in pairs]
    pods = [p for _, ps in pairs for p in ps]
    state.load(synthetic_nodes(2, seed=1), pgs, pods, queues=[open_queue("root"), open_queue("q", "root"),
                                                                open_queue("r", "root")])
    return {j.name: j for j in state.jobs.values()}


def _copy(name: str, **kw):
    return _pg(name, **{k: v for k, v in kw.items() if k in ("queue", "prio", "min_member")}), \
        [make_pod(f"{name}-0", "ns", name, kw.get("gpus", 1), created=kw.get("created", 0))]


def test_copies_of_a_single_pod_job_look_alike():
    """Pods that differ only in name, uid, creation time and their PodGroup's name."""
    jobs = _jobs(_copy("a"), _copy("b", created=30))
    assert look_alike(jobs["a"], jobs["b"]) and look_alike(jobs["b"], jobs["a"])


def test_what_makes_jobs_differ():
    base = _copy("a")
    other_request = _copy("b", gpus=2)
    other_queue = _copy("c", queue="r")
    other_priority = _copy("d", prio="build")
    gang = (_pg("e", min_member=2), [make_pod(f"e-{i}", "ns", "e", 1) for i in range(2)])
    labelled = _copy("f")
    labelled[1][0].metadata.labels = {"app": "x"}
    annotated = _copy("g")
    annotated[1][0].metadata.annotations["gpu-fraction"] = "0.5"
    claims = _copy("h"), _copy("i")
    for _, pods in claims:
        pods[0].spec.resource_claims = [PodResourceClaim(name="gpu", resource_claim_template_name="one-gpu")]
    ephemeral = _copy("k"), _copy("l")
    for _, pods in ephemeral:
        pods[0].spec.volumes = [Volume(name="scratch", ephemeral=EphemeralVolumeSource(volume_claim_template={}))]
    running = _copy("m")
    running[1][0].spec.node_name = "node-00000"
    running[1][0].status.phase = "Running"
    jobs = _jobs(base, other_request, other_queue, other_priority, gang, labelled, annotated, *claims,
                 *ephemeral, running)
    a = jobs["a"]
    for name in ("b", "c", "d", "e", "f", "g", "m"):
        assert not look_alike(a, jobs[name]), name
        assert not look_alike(jobs[name], a), name
    # equal specs that own per-pod objects (a claim or a PVC made for each pod) are never copies
    assert not look_alike(jobs["h"], jobs["i"])
    assert not look_alike(jobs["k"], jobs["l"])


# ---------------------------------------------------------------------------- end to end
def _queue(name: str, parent: str, quota: float, limit: float) -> Queue:
    g = QueueResource(quota=quota, over_quota_weight=1, limit=limit)
    r = QueueResource(quota=-1, over_quota_weight=1, limit=-1)
    return Queue(metadata=ObjectMeta(name=name, uid=f"uid-q-{name}", creation_timestamp="2024-01-01T00:00:00Z"),
                 spec=QueueSpec(parent_queue=parent, resources=QueueResources(gpu=g, cpu=r, memory=r)))


def _backlog(seed: int, jobs_labels: bool = False) -> ClusterState:
    """Random queues (quota, limit) in two departments, running jobs of mixed priorities, and
    runs of pending copies (with the odd different job between them) in every queue.
    ``jobs_labels``: every pod carries its own ``job-name`` and ``controller-uid`` labels, as
    a batch/v1 Job's pods do, and now and then a pending pod keeps its Job's pods apart from
    one other Job's (required anti-affinity on ``job-name``)."""
    rng = random.Random(seed)
    nodes = synthetic_nodes(rng.randint(1, 3), seed=seed, cpu_only_share=0.0, tainted_share=0.0)
    queues = [open_queue("root"), open_queue("d0", "root"), open_queue("d1", "root")]
    pgs, pods = [], []
    slots = [(n.metadata.name, g) for n in nodes for g in range(8)]
    rng.shuffle(slots)
    for qi in range(rng.randint(2, 6)):
        name = f"q{qi}"
        quota = rng.choice([0, 1, 2, 4])
        queues.append(_queue(name, f"d{qi % 2}", quota, rng.choice([-1, quota, quota + 2])))
        for r in range(rng.randint(0, 6)):
            if not slots:
                break
            group = f"{name}-run{r}"
            pgs.append(_pg(group, name, rng.choice(["train", "build", "inference"])))
            pods.append(make_pod(f"{group}-0", "ns", group, 1, cpu="1", mem="4Gi", node=slots.pop()[0]))
        prio, gpus = rng.choice(["train", "build", "inference"]), rng.choice([1, 2])
        for j in range(rng.randint(1, 12)):
            if rng.random() < 0.2:                 # a job unlike its neighbours
                prio, gpus = rng.choice(["train", "build", "inference"]), rng.choice([1, 2])
            group = f"{name}-job{j:02d}"
            pgs.append(_pg(group, name, prio))
            pods.append(make_pod(f"{group}-0", "ns", group, gpus, cpu="1", mem="4Gi", created=j))
            if jobs_labels and rng.random() < 0.1:
                other = f"q{rng.randrange(qi + 1)}-job{rng.randrange(12):02d}"
                pods[-1].spec.affinity = Affinity(pod_anti_affinity=PodAffinity(
                    required_during_scheduling_ignored_during_execution=[PodAffinityTerm(
                        label_selector=LabelSelector(match_labels={"job-name": other}),
                        topology_key="kubernetes.io/hostname")]))
    if jobs_labels:
        for p in pods:
            group = p.metadata.annotations["pod-group-name"]
            p.metadata.labels = {**(p.metadata.labels or {}), "job-name": group, "controller-uid": f"uid-{group}"}
    state = ClusterState()
    state.load(nodes, pgs, pods, queues=queues)
    return state


def _decisions(result) -> tuple:
    return ([(d.pod, d.node) for d in result.bindings], [(d.pod, d.node) for d in result.pipelined],
            sorted(d.pod for d in result.evictions), sorted(result.unschedulable.items()))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_passing_over_copies_decides_as_the_full_walk(seed):
    """Every default action over random backlogs: the walk with cached picks, carried picks
    and look-alike skipping decides the same as the plain walk, two cycles in a row."""
    got = []
    for cached in (True, False):
        job_order.USE_CACHE = cached
        try:
            state = _backlog(seed)
            sched = Scheduler(state, default_config())
            got.append([_decisions(sched.run_cycle(RecordingCache(state))) for _ in range(2)])
        finally:
            job_order.USE_CACHE = True
    assert got[0] == got[1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_jobs_pods_that_differ_only_in_labels_decide_as_with_labels_compared(seed):
    """Every default action over random backlogs of Jobs' pods (labels of their own, some
    with anti-affinity on another Job's name): passing over copies that differ only in
    labels (while no pod carries inter-pod terms) decides as comparing labels too, and as
    the plain walk, two cycles in a row."""
    got = []
    for blind, cached in ((True, True), (False, True), (False, False)):
        lookalike.USE_BLIND, job_order.USE_CACHE = blind, cached
        try:
            state = _backlog(seed, jobs_labels=True)
            sched = Scheduler(state, default_config())
            got.append([_decisions(sched.run_cycle(RecordingCache(state))) for _ in range(2)])
        finally:
            lookalike.USE_BLIND, job_order.USE_CACHE = True, True
    assert got[0] == got[1] == got[2]


def test_copies_but_for_labels_are_blind_look_alikes_only():
    a, b = _copy("a"), _copy("b")
    a[1][0].metadata.labels = {"job-name": "a"}
    b[1][0].metadata.labels = {"job-name": "b"}
    jobs = _jobs(a, b, _copy("c", gpus=2))
    assert not look_alike(jobs["a"], jobs["b"])
    assert lookalike.look_alike_blind(jobs["a"], jobs["b"]) and lookalike.look_alike_blind(jobs["b"], jobs["a"])
    assert not lookalike.look_alike_blind(jobs["a"], jobs["c"])


def _guarded_state(guard: bool) -> ClusterState:
    """One node; Job pods j1 and j2 (labels of their own) pending; with ``guard``, a running
    pod that keeps j1's pods off the node (required anti-affinity on ``job-name``)."""
    node = synthetic_nodes(1, seed=1, cpu_only_share=0.0, tainted_share=0.0)[0]
    pgs, pods = [], []
    if guard:
        pgs.append(_pg("guard", "q", "build"))
        pods.append(make_pod("guard-0", "ns", "guard", 0, cpu="1", mem="1Gi", node=node.metadata.name))
        pods[-1].spec.affinity = Affinity(pod_anti_affinity=PodAffinity(
            required_during_scheduling_ignored_during_execution=[PodAffinityTerm(
                label_selector=LabelSelector(match_labels={"job-name": "j1"}), topology_key="kubernetes.io/hostname")]))
    for j, name in enumerate(("j1", "j2")):
        pgs.append(_pg(name, "q", "build"))
        pods.append(make_pod(f"{name}-0", "ns", name, 1, cpu="1", mem="1Gi", created=j))
        pods[-1].metadata.labels = {"job-name": name, "controller-uid": f"uid-{name}"}
    state = ClusterState()
    state.load([node], pgs, pods, queues=[open_queue("root"), open_queue("q", "root")])
    return state


def test_labels_count_again_once_a_pod_carries_terms_or_a_hook_may_read_them():
    def session(state):
        return Scheduler(state, default_config()).open_session(RecordingCache(state), now=1.0)

    ssn = session(_guarded_state(guard=False))
    assert lookalike.alike_for(ssn) is lookalike.look_alike_blind
    j1, j2 = ssn.jobs["ns/j1"], ssn.jobs["ns/j2"]
    assert lookalike.look_alike_blind(j1, j2) and not look_alike(j1, j2)
    ssn = session(_guarded_state(guard=True))           # the guard carries a term
    assert ssn.predicate_epoch() != lookalike.NO_TERMS and lookalike.alike_for(ssn) is look_alike
    ssn = session(_guarded_state(guard=False))
    ssn.reclaim_victim_filter_fns.append(lambda ssn_, reclaimer, victim: True)     # declares nothing
    assert lookalike.alike_for(ssn) is look_alike
