"""reclaim and preempt at scale: a 1,000-pod gang against 8,000 running single-GPU pods.

1,000 nodes x 8 GPUs are filled by 8,000 preemptible single-pod jobs. A pending 1,000-pod
single-GPU gang then needs 1,000 victims:

- reclaim: the gang is in a starved queue, the victims in another queue over its quota;
- preempt: the gang and the victims share a queue, the victims have lower priority.

Each round times one action's ``execute`` on a freshly opened session (state rebuilt in
setup). Target <= 1 s each. Smoke size with KAI_BENCH_SMOKE=1.
Run: PYTHONPATH=. pytest bench/bench_reclaim.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

from _sizes import size
from kai.api.k8s import (Container, Node, NodeCondition, NodeStatus, ObjectMeta, Pod, PodGroup, PodGroupSpec,
                         PodSpec, PodStatus, Queue, QueueResource, QueueResources, QueueSpec, ResourceRequirements)
from kai.cache.cluster_state import ClusterState
from kai.config import parse_config
from kai.framework.action import ACTIONS
from kai.scheduler import RecordingCache, Scheduler

N_NODES = size(1_000, 50)
GPUS = 8
N_PREEMPTOR = size(1_000, 50)
NOW = 1_704_067_200.0 + 86_400


def _ts(i: int) -> str:
    return f"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"


def _queue(name: str, gpu_quota: float) -> Queue:
    unl = QueueResource(quota=-1, limit=-1, over_quota_weight=1)
    return Queue(metadata=ObjectMeta(name=name, uid=f"q-{name}", creation_timestamp=_ts(0)),
                 spec=QueueSpec(resources=QueueResources(gpu=QueueResource(quota=gpu_quota, limit=-1,
                                                                           over_quota_weight=1),
                                                         cpu=unl, memory=unl)))


def _pod(name: str, pg: str, node: str, created: int) -> Pod:
    return Pod(metadata=ObjectMeta(name=name, namespace="default", uid=f"uid-{name}",
                                   creation_timestamp=_ts(created), annotations={"pod-group-name": pg}),
               spec=PodSpec(scheduler_name="kai-scheduler", node_name=node,
                            containers=[Container(name="c", resources=ResourceRequirements(
                                requests={"nvidia.com/gpu": "1", "cpu": "1", "memory": "1Gi"}))]),
               status=PodStatus(phase="Running" if node else "Pending"))


def _pg(name: str, queue: str, min_member: int, pc: str, created: int) -> PodGroup:
    return PodGroup(metadata=ObjectMeta(name=name, namespace="default", uid=f"uid-pg-{name}",
                                        creation_timestamp=_ts(created)),
                    spec=PodGroupSpec(min_member=min_member, queue=queue, priority_class_name=pc))


def build_state(same_queue: bool) -> ClusterState:
    state = ClusterState()
    total = N_NODES * GPUS
    victim_q = "train" if same_queue else "hog"
    state.upsert_queue(_queue("train", total / 2 if same_queue else total / 8))
    if not same_queue:
        state.upsert_queue(_queue("hog", total / 2))
    for i in range(N_NODES):
        alloc = {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": str(GPUS), "pods": "110"}
        state.upsert_node(Node(metadata=ObjectMeta(name=f"node-{i:05d}"),
                               status=NodeStatus(allocatable=alloc, capacity=alloc,
                                                 conditions=[NodeCondition(type="Ready", status="True")])))
    k = 0
    for i in range(N_NODES):
        for g in range(GPUS):
            name = f"v-{k:05d}"
            state.upsert_podgroup(_pg(name, victim_q, 1, "train", k))
            state.upsert_pod(_pod(f"{name}-0", name, f"node-{i:05d}", k))
            k += 1
    pc = "build-preemptible" if same_queue else "train"
    state.upsert_podgroup(_pg("gang", "train", N_PREEMPTOR, pc, k + 1))
    for j in range(N_PREEMPTOR):
        state.upsert_pod(_pod(f"gang-{j}", "gang", "", k + 1))
    return state


def _run(benchmark, action: str, same_queue: bool):
    holder = {}
    config = parse_config({"actions": action})

    def setup():
        state = build_state(same_queue)
        sched = Scheduler(state, config)
        cache = RecordingCache(state)
        holder["cache"] = cache
        holder["ssn"] = sched.open_session(cache, now=NOW)
        return (), {}

    def target():
        ACTIONS[action]().execute(holder["ssn"])

    benchmark.pedantic(target, setup=setup, rounds=3, iterations=1)
    res = holder["cache"].result
    holder["ssn"].close()
    assert len(res.evictions) == N_PREEMPTOR, len(res.evictions)
    assert len(res.pipelined) == N_PREEMPTOR
    assert {d.action for d in res.evictions} == {action}


def test_reclaim_1000_pod_gang(benchmark):
    _run(benchmark, "reclaim", same_queue=False)


def test_preempt_1000_pod_gang(benchmark):
    _run(benchmark, "preempt", same_queue=True)
