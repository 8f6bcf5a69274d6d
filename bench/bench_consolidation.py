"""consolidation at scale: whole-node jobs into a cluster fragmented by half-node pods.

N_NODES nodes x 8 GPUs each run one preemptible 4-GPU pod (every node half empty: half the
cluster's GPUs are idle, yet no 8-GPU job fits). N_PENDING preemptible 8-GPU jobs wait. The
consolidation action must, for each, move one 4-GPU pod next to another (evict + pipeline)
and pipeline the job onto the node it empties: N_PENDING moves, nothing evicted for good.

Each round times one ``execute`` on a freshly opened session (state rebuilt in setup).
Smoke size with KAI_BENCH_SMOKE=1.
Run: PYTHONPATH=. pytest bench/bench_consolidation.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

from _sizes import size
from kai.api.k8s import (Container, Node, NodeCondition, NodeStatus, ObjectMeta, Pod, PodGroup, PodGroupSpec,
                         PodSpec, PodStatus, Queue, QueueResource, QueueResources, QueueSpec, ResourceRequirements)
from kai.cache.cluster_state import ClusterState
from kai.config import parse_config
from kai.framework.action import ACTIONS
from kai.scheduler import RecordingCache, Scheduler

N_NODES = size(400, 20)
N_PENDING = size(100, 5)
GPUS = 8
NOW = 1_704_067_200.0 + 86_400


def _ts(i: int) -> str:
    return f"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"


def _pod(name: str, pg: str, node: str, gpus: int, created: int) -> Pod:
    return Pod(metadata=ObjectMeta(name=name, namespace="default", uid=f"uid-{name}",
                                   creation_timestamp=_ts(created), annotations={"pod-group-name": pg}),
               spec=PodSpec(scheduler_name="kai-scheduler", node_name=node,
                            containers=[Container(name="c", resources=ResourceRequirements(
                                requests={"nvidia.com/gpu": str(gpus), "cpu": "1", "memory": "1Gi"}))]),
               status=PodStatus(phase="Running" if node else "Pending"))


def _pg(name: str, created: int) -> PodGroup:
    return PodGroup(metadata=ObjectMeta(name=name, namespace="default", uid=f"uid-pg-{name}",
                                        creation_timestamp=_ts(created)),
                    spec=PodGroupSpec(min_member=1, queue="train", priority_class_name="train"))


def build_state() -> ClusterState:
    state = ClusterState()
    unl = QueueResource(quota=-1, limit=-1, over_quota_weight=1)
    state.upsert_queue(Queue(metadata=ObjectMeta(name="train", uid="q-train", creation_timestamp=_ts(0)),
                             spec=QueueSpec(resources=QueueResources(gpu=unl, cpu=unl, memory=unl))))
    for i in range(N_NODES):
        alloc = {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": str(GPUS), "pods": "110"}
        state.upsert_node(Node(metadata=ObjectMeta(name=f"node-{i:05d}"),
                               status=NodeStatus(allocatable=alloc, capacity=alloc,
                                                 conditions=[NodeCondition(type="Ready", status="True")])))
        name = f"half-{i:05d}"
        state.upsert_podgroup(_pg(name, i))
        state.upsert_pod(_pod(f"{name}-0", name, f"node-{i:05d}", GPUS // 2, i))
    for j in range(N_PENDING):
        name = f"whole-{j:05d}"
        state.upsert_podgroup(_pg(name, N_NODES + j))
        state.upsert_pod(_pod(f"{name}-0", name, "", GPUS, N_NODES + j))
    return state


def run_once():
    state = build_state()
    cache = RecordingCache(state)
    ssn = Scheduler(state, parse_config({"actions": "consolidation"})).open_session(cache, now=NOW)
    return ssn, cache


def test_consolidation_whole_node_jobs(benchmark):
    holder = {}

    def setup():
        holder["ssn"], holder["cache"] = run_once()
        return (), {}

    def target():
        ACTIONS["consolidation"]().execute(holder["ssn"])

    benchmark.pedantic(target, setup=setup, rounds=3, iterations=1)
    res = holder["cache"].result
    holder["ssn"].close()
    assert len(res.evictions) == N_PENDING, len(res.evictions)
    assert {d.action for d in res.evictions} == {"consolidation"}
    moved = {d.pod for d in res.evictions}
    assert moved <= {d.pod for d in res.pipelined}          # every moved pod is pipelined again
    assert len(res.pipelined) == 2 * N_PENDING
    assert res.bindings == []


if __name__ == "__main__":
    import time
    ssn, cache = run_once()
    t = time.perf_counter()
    ACTIONS["consolidation"]().execute(ssn)
    dt = time.perf_counter() - t
    print(f"{N_NODES} nodes, {N_PENDING} whole-node jobs: {len(cache.result.evictions)} moves in {dt:.3f} s")
