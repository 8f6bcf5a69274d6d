"""Look-alike jobs: which pairs count as copies, and (end to end) that passing over copies of
a refused job in reclaim and preempt decides exactly what the full walk decides."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kai.actions.common import job_order
from kai.actions.common.lookalike import look_alike
from kai.api.k8s import (EphemeralVolumeSource, ObjectMeta, PodGroup, PodGroupSpec, PodResourceClaim, Queue, QueueResource,
                         QueueResources, QueueSpec, Volume)
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


def _backlog(seed: int) -> ClusterState:
    """Random queues (quota, limit) in two departments, running jobs of mixed priorities, and
    runs of pending copies (with the odd different job between them) in every queue."""
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
